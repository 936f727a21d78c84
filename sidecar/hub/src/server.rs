//! `lanes hub serve`: the listener, TLS, the token check and the rate limits in front of the hub's methods.
//!
//! The token is checked on the WebSocket upgrade (`Authorization: Bearer …`), in constant time; a peer
//! that keeps guessing is refused without a comparison for a while. Tokens are never logged. The web view
//! (`GET /`, `/api/…`) takes the same header, or the cookie its login form sets (a random id the hub keeps,
//! never the token itself).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, Methods, Server, ServerConfig, stop_channel};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig as TlsConfig;
use tower::Service;

use crate::batch::SideBySide;
use crate::{Hub, HubError, Store, module, web};

/// How `lanes hub serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `sqlite:PATH` or `etcd:URL[,URL…]`.
    pub store: String,
    /// The token clients must present (required unless listening on loopback).
    pub token: Option<String>,
    /// Certificate chain and private key (PEM) for `wss://`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allow plain `ws://` on a non-loopback address.
    pub insecure: bool,
    /// Requests per second one connection may send (bursts of twice that).
    pub rate_limit: u32,
}

impl ServeOptions {
    /// Refuses set-ups that would expose claims: a token off loopback, TLS (or `--insecure`) too.
    pub fn check(&self) -> Result<(), HubError> {
        if self.listen.ip().is_loopback() {
            return Ok(());
        }
        if self.token.is_none() {
            return Err(HubError::Invalid(format!(
                "a hub listening on {} needs a token: put one in a file and pass --token-file, or set LANES_HUB_TOKEN",
                self.listen
            )));
        }
        if self.tls.is_none() && !self.insecure {
            return Err(HubError::Invalid(format!(
                "a hub listening on {} needs TLS: pass --tls-cert and --tls-key, or --insecure on a network you trust",
                self.listen
            )));
        }
        Ok(())
    }
}

/// A token bucket per connection.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(per_second: u32) -> RateLimiter {
        let per_second = f64::from(per_second.max(1));
        RateLimiter { per_second, state: Mutex::new((per_second * 2.0, Instant::now())) }
    }

    pub(crate) fn admit(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.per_second * 2.0);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failed token attempts per peer address; past [`GUESSES`] in [`GUESS_WINDOW`] a peer is refused unheard.
#[derive(Default)]
struct Guesses(Mutex<HashMap<IpAddr, (u32, Instant)>>);

const GUESSES: u32 = 5;
/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// How many TLS handshakes may be under way at once; connections past that are dropped at once.
const MAX_PENDING_HANDSHAKES: usize = 256;
const GUESS_WINDOW: Duration = Duration::from_secs(10);

impl Guesses {
    fn blocked(&self, ip: IpAddr) -> bool {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&ip).is_some_and(|(n, since)| *n >= GUESSES && since.elapsed() < GUESS_WINDOW)
    }

    fn failed(&self, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < GUESS_WINDOW);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= GUESS_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// Compares without stopping at the first difference, so timing tells nothing about the token.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

fn refusal(status: u16, text: &'static str) -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::from(text));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    response
}

/// The web view's login form: the token, posted to `/login`, buys a cookie.
const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lanes hub: log in</title>
<style>body { font: 14px system-ui, sans-serif; margin: 3rem; } input { font: inherit; padding: .3rem; }</style>
</head><body><h1>lanes hub</h1><p>This hub needs its token.</p>
<form method="post" action="/login"><input type="password" name="token" placeholder="hub token" autofocus>
<button type="submit">Log in</button></form></body></html>
"#;

/// The cookie the login form sets.
const LOGIN_COOKIE: &str = "lanes_hub_login";

/// Browsers logged in to the web view: random ids handed out as HttpOnly cookies, kept until the hub stops.
#[derive(Default)]
struct Logins(Mutex<std::collections::HashSet<String>>);

impl Logins {
    /// Whether the request carries a login cookie this hub handed out.
    fn knows<B>(&self, request: &http::Request<B>) -> bool {
        let ids = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        request
            .headers()
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(LOGIN_COOKIE)?.strip_prefix('='))
            .any(|id| ids.contains(id))
    }

    /// `POST /login` with `token=…`: the right token gets a cookie and goes to the page; a wrong one counts as
    /// a guess and gets the form again.
    async fn log_in(
        &self,
        request: HttpRequest<hyper::body::Incoming>,
        token: Option<&[u8]>,
        guesses: &Guesses,
        ip: IpAddr,
    ) -> HttpResponse {
        use http_body_util::BodyExt;
        let body = http_body_util::Limited::new(request.into_body(), 4096).collect().await;
        let form = body.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned()).unwrap_or_default();
        let given = web::query_param(&form, "token").unwrap_or_default();
        let right = token.is_none_or(|expected| same_token(format!("Bearer {given}").as_bytes(), expected));
        if !right {
            guesses.failed(ip);
            tracing::warn!("refused a web login from {ip}: wrong token");
            return web::page(401, LOGIN_PAGE);
        }
        let Some(id) = random_id() else { return refusal(500, "no randomness for a login id\n") };
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.clone());
        let mut response = refusal(303, "logged in\n");
        let headers = response.headers_mut();
        headers.insert(http::header::LOCATION, http::HeaderValue::from_static("/"));
        let cookie = format!("{LOGIN_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(value) = http::HeaderValue::from_str(&cookie) {
            headers.insert(http::header::SET_COOKIE, value);
        }
        response
    }
}

/// 128 random bits from the kernel, in hex.
fn random_id() -> Option<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor, HubError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| HubError::Invalid(format!("failed to read {}: {e}", path.display())))
    };
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HubError::Invalid(format!("{} holds no usable certificate: {e}", cert.display())))?;
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| HubError::Invalid(format!("{}: {e}", key.display())))?
        .ok_or_else(|| HubError::Invalid(format!("{} holds no private key", key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = TlsConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| HubError::Invalid(format!("TLS set-up failed: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves until `stop` resolves. `ready` gets the bound address once the hub accepts connections.
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), HubError> {
    options.check()?;
    let tls = match &options.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let hub = Arc::new(Hub::new(Store::open(&options.store).await?));
    let methods: Methods = module(Arc::clone(&hub)).into();
    let logins = Arc::new(Logins::default());
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| HubError::Unavailable(format!("failed to listen on {}: {e}", options.listen)))?;
    let address = listener.local_addr().map_err(|e| HubError::Unavailable(e.to_string()))?;
    let (stop_handle, server_handle) = stop_channel();
    let builder = Server::builder()
        .set_config(ServerConfig::builder().max_connections(4096).max_request_body_size(4 << 20).build())
        .to_service_builder()
        .set_rpc_middleware(RpcServiceBuilder::new().layer_fn(SideBySide));
    let token = options.token.clone().map(|t| Arc::<[u8]>::from(format!("Bearer {t}").into_bytes()));
    let guesses = Arc::new(Guesses::default());
    let pages: Arc<dyn web::Source> = Arc::new(web::Shared::new(Arc::clone(&hub) as Arc<dyn web::Source>));
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    ready(address);
    tokio::pin!(stop);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = socket.set_nodelay(true);
        let limiter = Arc::new(RateLimiter::new(options.rate_limit));
        let stopped = stop_handle.clone().shutdown();
        let (methods, builder, stop_handle) = (methods.clone(), builder.clone(), stop_handle.clone());
        let (token, guesses, logins, pages) =
            (token.clone(), Arc::clone(&guesses), Arc::clone(&logins), Arc::clone(&pages));
        let service = tower::service_fn(move |mut request: HttpRequest<hyper::body::Incoming>| {
            let mut inner = builder.clone().build(methods.clone(), stop_handle.clone());
            let web = web::is_web_request(&request);
            let login = request.method() == http::Method::POST && request.uri().path() == "/login";
            // Only failures are throttled: the right token always gets in, however hard someone else at the
            // same address (a NAT, a shared host) is guessing.
            let verdict = match &token {
                None => None,
                Some(_) if login => None,
                Some(expected) => {
                    let given = request.headers().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
                    if same_token(given, expected) || (web && logins.knows(&request)) {
                        None
                    } else if guesses.blocked(peer.ip()) {
                        Some(refusal(429, "too many wrong tokens: wait and retry\n"))
                    } else if web && request.uri().path() == "/" {
                        // A browser gets the login form, not a bare refusal (not counted as a guess).
                        Some(web::page(401, LOGIN_PAGE))
                    } else {
                        guesses.failed(peer.ip());
                        tracing::warn!("refused {peer}: missing or wrong token");
                        Some(refusal(401, "a valid hub token is required\n"))
                    }
                }
            };
            request.extensions_mut().insert(Arc::clone(&limiter));
            let (token, guesses, logins, source) =
                (token.clone(), Arc::clone(&guesses), Arc::clone(&logins), Arc::clone(&pages));
            async move {
                match verdict {
                    Some(refused) => Ok(refused),
                    None if login => Ok(logins.log_in(request, token.as_deref(), &guesses, peer.ip()).await),
                    None if web => Ok(web::answer(&request, source).await),
                    None => inner.call(request).await,
                }
            }
        });
        match &tls {
            None => {
                tokio::spawn(jsonrpsee::server::serve_with_graceful_shutdown(socket, service, stopped));
            }
            Some(acceptor) => {
                // A peer that connects and stays silent must not hold a descriptor for long, nor can many.
                let Ok(pending) = Arc::clone(&handshakes).try_acquire_owned() else {
                    tracing::debug!("{peer}: too many TLS handshakes under way; connection dropped");
                    continue;
                };
                let handshake = tokio::time::timeout(TLS_HANDSHAKE_LIMIT, acceptor.accept(socket));
                tokio::spawn(async move {
                    let handshake = handshake.await;
                    drop(pending);
                    match handshake {
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Ok(Ok(stream)) => {
                            let served: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
                                Box::pin(jsonrpsee::server::serve_with_graceful_shutdown(stream, service, stopped));
                            let _ = served.await;
                        }
                    }
                });
            }
        }
    }
    let _ = server_handle.stop();
    Ok(())
}
