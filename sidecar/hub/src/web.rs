//! The web view (DESIGN.md §9): one page that shows a claim space live, and its data as JSON. The hub serves
//! it on its own port for each project it serves; `lanes web` serves it for one repository's sidecar. The page
//! is one file of plain HTML and JavaScript in this crate: nothing is fetched from anywhere else.
//!
//! `GET /` is the page, `GET /api/view[?project=P]` the view as JSON, and `GET /api/stream[?project=P]` the
//! same view as server-sent events, pushed whenever it changes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jsonrpsee::server::{HttpBody, HttpResponse};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The page.
pub const PAGE: &str = include_str!("web/index.html");

/// How often a stream looks for a change of its view.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// A stream with nothing new says so this often, so proxies and browsers keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A view being read.
pub type ViewFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// Where the page's data comes from: the hub (for a project) or one repository's sidecar.
pub trait Source: Send + Sync + 'static {
    /// The view the page renders: optional sections `machines`, `sessions`, `claims`, `tasks`, `queue`,
    /// `events` (arrays of objects, as `--json` shows them), a `title`, and `projects` to choose from.
    fn view(&self, project: Option<&str>) -> ViewFuture<'_>;
}

/// How long a view read for one page serves the others: every open page looks for a change every
/// [`LOOK_EVERY`], and reading a project's view costs the same however many pages are open.
const FRESH: Duration = Duration::from_millis(150);
/// How many projects' last views [`Shared`] keeps (a page names its project in the URL: any string).
const VIEWS_KEPT: usize = 64;

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Result<Value, String>)>>>;

/// A source read at most once per [`FRESH`] for each project, whatever the number of open pages and API
/// calls: those that ask meanwhile get the same view, and those that ask during a read wait for it.
pub struct Shared {
    source: Arc<dyn Source>,
    views: std::sync::Mutex<HashMap<Option<String>, Slot>>,
}

impl Shared {
    /// Shares the views of `source`.
    pub fn new(source: Arc<dyn Source>) -> Shared {
        Shared { source, views: std::sync::Mutex::default() }
    }

    fn slot(&self, project: Option<&str>) -> Slot {
        let mut views = self.views.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = project.map(str::to_owned);
        if views.len() >= VIEWS_KEPT && !views.contains_key(&key) {
            // Forget the views nobody is reading now.
            views.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        Arc::clone(views.entry(key).or_default())
    }
}

impl Source for Shared {
    fn view(&self, project: Option<&str>) -> ViewFuture<'_> {
        let slot = self.slot(project);
        let project = project.map(str::to_owned);
        Box::pin(async move {
            let mut last = slot.lock().await;
            if let Some((read_at, view)) = &*last
                && read_at.elapsed() < FRESH
            {
                return view.clone();
            }
            let view = self.source.view(project.as_deref()).await;
            *last = Some((Instant::now(), view.clone()));
            view
        })
    }
}

/// Whether the web view answers this request (a plain GET of one of its paths, not a WebSocket upgrade).
pub fn is_web_request<B>(request: &http::Request<B>) -> bool {
    request.method() == http::Method::GET
        && !request.headers().contains_key(http::header::UPGRADE)
        && matches!(request.uri().path(), "/" | "/index.html" | "/api/view" | "/api/stream")
}

/// Answers a request [`is_web_request`] accepted.
pub async fn answer<B>(request: &http::Request<B>, source: Arc<dyn Source>) -> HttpResponse {
    let project = query_param(request.uri().query().unwrap_or_default(), "project");
    match request.uri().path() {
        "/api/view" => match source.view(project.as_deref()).await {
            Ok(view) => respond(200, "application/json", HttpBody::from(view.to_string())),
            Err(e) => respond(503, "application/json", HttpBody::from(json!({ "error": e }).to_string())),
        },
        "/api/stream" => stream(source, project),
        _ => page(200, PAGE),
    }
}

/// A page (the view, or the hub's login form) with headers that keep it to itself.
pub fn page(status: u16, html: &'static str) -> HttpResponse {
    let mut response = respond(status, "text/html; charset=utf-8", HttpBody::from(html));
    let headers = response.headers_mut();
    let policy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                  form-action 'self'; frame-ancestors 'none'";
    headers.insert("content-security-policy", http::HeaderValue::from_static(policy));
    headers.insert("referrer-policy", http::HeaderValue::from_static("no-referrer"));
    response
}

fn respond(status: u16, content_type: &'static str, body: HttpBody) -> HttpResponse {
    let mut response = HttpResponse::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    response
}

/// The view as server-sent events: the first at once, then each change; it ends when the client goes.
fn stream(source: Arc<dyn Source>, project: Option<String>) -> HttpResponse {
    let (sender, receiver) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut last: Option<Value> = None;
        let mut quiet = Duration::ZERO;
        while !sender.is_closed() {
            let view = source.view(project.as_deref()).await.unwrap_or_else(|e| json!({ "error": e }));
            let frame = if last.as_ref() == Some(&view) {
                (quiet >= KEEPALIVE).then(|| ": nothing new\n\n".to_owned())
            } else {
                let frame = format!("data: {view}\n\n");
                last = Some(view);
                Some(frame)
            };
            match frame {
                Some(frame) => {
                    quiet = Duration::ZERO;
                    if sender.send(Bytes::from(frame)).await.is_err() {
                        return;
                    }
                }
                None => quiet += LOOK_EVERY,
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
    respond(200, "text/event-stream", HttpBody::new(ChannelBody(receiver)))
}

/// A response body fed by a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// The value of `name` in a URL query (`a=1&project=acme%2Fapi`), percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes and `+` (a space in forms); a broken escape stays as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the web view alone on `listener` (`lanes web`) until `stop` resolves; anything else is 404.
pub async fn serve_alone(
    listener: TcpListener,
    source: Arc<dyn Source>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_handle, server_handle) = jsonrpsee::server::stop_channel();
    tokio::pin!(stop);
    loop {
        let (socket, _peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut stop => break,
        };
        let source = Arc::clone(&source);
        let service = tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let source = Arc::clone(&source);
            async move {
                if is_web_request(&request) {
                    Ok::<_, Infallible>(answer(&request, source).await)
                } else {
                    Ok(respond(404, "text/plain; charset=utf-8", HttpBody::from("not found: try /\n")))
                }
            }
        });
        tokio::spawn(jsonrpsee::server::serve_with_graceful_shutdown(socket, service, stop_handle.clone().shutdown()));
    }
    let _ = server_handle.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A source that counts its reads; each read takes a while.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Source for Counted {
        fn view(&self, project: Option<&str>) -> ViewFuture<'_> {
            let project = project.map(str::to_owned);
            Box::pin(async move {
                let read = self.0.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(json!({"project": project, "read": read}))
            })
        }
    }

    #[test]
    fn open_pages_share_one_read_of_a_project_view() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let counted = Arc::new(Counted::default());
            let shared = Shared::new(Arc::clone(&counted) as Arc<dyn Source>);
            let views = futures::future::join_all((0..10).map(|_| shared.view(Some("p")))).await;
            assert!(views.iter().all(|v| v.as_ref().ok() == Some(&json!({"project": "p", "read": 1}))), "{views:?}");
            assert_eq!(counted.0.load(Ordering::SeqCst), 1, "ten pages asking at once: one read");
            shared.view(Some("q")).await.expect("view");
            assert_eq!(counted.0.load(Ordering::SeqCst), 2, "another project is read on its own");
            tokio::time::sleep(FRESH).await;
            assert_eq!(shared.view(Some("p")).await.expect("view")["read"], 3, "a stale view is read again");
            for n in 0..2 * VIEWS_KEPT {
                shared.view(Some(&format!("x{n}"))).await.expect("view");
            }
            assert!(shared.views.lock().expect("views").len() <= VIEWS_KEPT, "views nobody reads are forgotten");
        });
    }

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(query_param("a=1&project=acme%2Fapi", "project").as_deref(), Some("acme/api"));
        assert_eq!(query_param("project=a+b", "project").as_deref(), Some("a b"));
        assert_eq!(query_param("project=100%", "project").as_deref(), Some("100%"));
        assert_eq!(query_param("projects=x", "project"), None);
    }
}
