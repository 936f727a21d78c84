//! One WebSocket to a hub, speaking JSON-RPC: a caller queues its request for the writer task and a reader
//! task hands each answer to the call that waits for it.
//!
//! jsonrpsee's client does the same through a background task and a `futures-timer` thread that it wakes
//! twice per request (a request timeout is registered and dropped each time): on a loaded 2-core machine
//! those hops cost the sidecar more than the request itself, and every grant and release makes one. The
//! WebSocket itself (handshake, TLS, headers, frames) is still jsonrpsee's transport.
//!
//! Grants and releases queued by the time the writer runs go as one JSON-RPC batch: one frame, and one
//! wake-up of the hub, for all the agents waiting at that moment (the hub answers a batch's calls side by
//! side). Other requests (a sync, a push) go alone, so a slow one holds up no grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::client_transport::ws::{EitherStream, HeaderMap, Receiver, Sender, Url, WsTransportClientBuilder};
use jsonrpsee::core::client::{ReceivedMessage, TransportReceiverT, TransportSenderT};
use jsonrpsee::types::ErrorObjectOwned;
use lanes_proto::client::Request;
use lanes_proto::hub::method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio_util::compat::Compat;

type Stream = Compat<EitherStream>;
type Answer = Result<Box<RawValue>, ErrorObjectOwned>;

/// Why a request got no answer of the hub's.
#[derive(Debug)]
pub enum CallFailure {
    /// The hub answered with an error.
    Refused(ErrorObjectOwned),
    /// The connection failed, closed or timed out: another hub may answer.
    Lost(String),
}

/// The most bytes one batch of requests takes (the hub takes requests of up to 4 MiB).
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The calls waiting for their answers, until the connection ends.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, tokio::sync::oneshot::Sender<Answer>>,
    /// Why the connection ended, once it has: later calls fail at once.
    ended: Option<String>,
}

/// The requests written to the connection but not yet sent, each as JSON text.
#[derive(Default)]
struct Outbox {
    /// Grants and releases: they go together as one batch.
    batched: Vec<String>,
    /// Everything else: each goes alone.
    alone: Vec<String>,
}

/// A connected hub.
pub struct HubConnection {
    outbox: Arc<Mutex<Outbox>>,
    /// Wakes the writer when the outbox fills.
    queued: Arc<tokio::sync::Notify>,
    waiting: Arc<Mutex<Waiting>>,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Drop for HubConnection {
    fn drop(&mut self) {
        // They would otherwise hold the socket open until the hub closes it.
        self.reader.abort();
        self.writer.abort();
    }
}

impl HubConnection {
    /// Connects to `url` (ws:// or wss://) with `headers` on the upgrade request; requests give up after
    /// `timeout`.
    pub async fn connect(
        url: &str,
        headers: HeaderMap,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<HubConnection, String> {
        let url = Url::parse(url).map_err(|e| format!("not a hub URL: {e}"))?;
        let (sender, receiver) = WsTransportClientBuilder::default()
            .set_headers(headers)
            .connection_timeout(connect_timeout)
            .build(url)
            .await
            .map_err(|e| e.to_string())?;
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let (outbox, queued) = (Arc::default(), Arc::default());
        let reader = tokio::spawn(read_answers(receiver, Arc::clone(&waiting)));
        let writer =
            tokio::spawn(write_requests(sender, Arc::clone(&outbox), Arc::clone(&queued), Arc::clone(&waiting)));
        Ok(HubConnection { outbox, queued, waiting, next_id: AtomicU64::new(1), reader, writer, timeout })
    }

    /// Whether the connection still stands.
    pub fn is_connected(&self) -> bool {
        lock(&self.waiting).ended.is_none()
    }

    /// Calls `method` with `params` (a JSON object) and decodes its result.
    pub async fn request<R: DeserializeOwned>(&self, method: &str, params: &RawValue) -> Result<R, CallFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = serde_json::to_string(&Request::new(id, method, params))
            .map_err(|e| CallFailure::Lost(format!("could not write the request: {e}")))?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if let Some(why) = &waiting.ended {
                return Err(CallFailure::Lost(why.clone()));
            }
            waiting.calls.insert(id, answer);
        }
        {
            let mut outbox = lock(&self.outbox);
            let batched = [method::ACQUIRE, method::RELEASE].contains(&method);
            if batched { &mut outbox.batched } else { &mut outbox.alone }.push(request);
        }
        self.queued.notify_one();
        let exchange = async { answered.await.map_err(|_| CallFailure::Lost(self.why_ended())) };
        let answered = tokio::time::timeout(self.timeout, exchange).await.unwrap_or_else(|_| {
            Err(CallFailure::Lost(format!("the hub did not answer {method} within {:?}", self.timeout)))
        });
        let answer = match answered {
            Ok(answer) => answer,
            Err(failure) => {
                lock(&self.waiting).calls.remove(&id);
                return Err(failure);
            }
        };
        match answer {
            Ok(result) => serde_json::from_str(result.get())
                .map_err(|e| CallFailure::Lost(format!("unexpected answer to {method}: {e}"))),
            Err(error) => Err(CallFailure::Refused(error)),
        }
    }

    fn why_ended(&self) -> String {
        lock(&self.waiting).ended.clone().unwrap_or_else(|| "the connection to the hub closed".to_owned())
    }
}

/// Locks the waiting calls or the outbox; a panic while one was held leaves nothing half-changed to fear.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A JSON-RPC answer: `result` or `error`, for the request `id`.
#[derive(Deserialize)]
struct AnswerLine {
    id: Option<u64>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorObjectOwned>,
}

/// Hands each answer to its call until the connection ends; then every waiting call fails (its sender is
/// dropped) and later ones fail at once.
async fn read_answers(mut receiver: Receiver<Stream>, waiting: Arc<Mutex<Waiting>>) {
    let why = loop {
        let text = match receiver.receive().await {
            Ok(ReceivedMessage::Text(text)) => text,
            Ok(ReceivedMessage::Bytes(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => break "the hub sent a binary frame that is not UTF-8".to_owned(),
            },
            Ok(ReceivedMessage::Pong) => continue,
            Err(e) => break format!("the connection to the hub failed: {e}"),
        };
        // A batch is answered with an array of answers.
        let answers = if text.trim_start().starts_with('[') {
            serde_json::from_str::<Vec<AnswerLine>>(&text)
        } else {
            serde_json::from_str::<AnswerLine>(&text).map(|answer| vec![answer])
        };
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => break format!("the hub sent something that is not a JSON-RPC answer: {e}"),
        };
        for answer in answers {
            let Some(id) = answer.id else { continue };
            let Some(call) = lock(&waiting).calls.remove(&id) else { continue };
            let answer = match (answer.result, answer.error) {
                (_, Some(error)) => Err(error),
                (Some(result), None) => Ok(result),
                (None, None) => Err(ErrorObjectOwned::owned(-32603, "the hub's answer has no result", None::<()>)),
            };
            // The call may have timed out meanwhile: nobody to tell.
            let _ = call.send(answer);
        }
    };
    end(&waiting, why);
}

/// Sends what callers queued, each time the outbox fills: the grants and releases queued by then as one
/// batch, everything else alone. When a send fails, every waiting call fails and later ones fail at once.
async fn write_requests(
    mut sender: Sender<Stream>,
    outbox: Arc<Mutex<Outbox>>,
    queued: Arc<tokio::sync::Notify>,
    waiting: Arc<Mutex<Waiting>>,
) {
    let why = 'sending: loop {
        queued.notified().await;
        let Outbox { batched, alone } = std::mem::take(&mut *lock(&outbox));
        for frame in alone.into_iter().chain(batches(batched, MAX_BATCH_BYTES)) {
            if let Err(e) = sender.send(frame).await {
                break 'sending format!("could not send to the hub: {e}");
            }
        }
    };
    end(&waiting, why);
}

/// `requests` as the frames that carry them: JSON-RPC batches of up to `max_bytes` (the hub refuses a frame
/// over 4 MiB whole, every call in it), a request alone when it is alone or bigger than that by itself.
fn batches(requests: Vec<String>, max_bytes: usize) -> Vec<String> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for request in requests {
        match groups.last_mut() {
            Some(group) if bytes + request.len() < max_bytes => {
                bytes += request.len() + 1;
                group.push(request);
            }
            _ => {
                bytes = request.len() + 2;
                groups.push(vec![request]);
            }
        }
    }
    groups
        .into_iter()
        .map(|mut group| if group.len() == 1 { group.remove(0) } else { format!("[{}]", group.join(",")) })
        .collect()
}

/// Ends the connection for its calls: those waiting fail (their senders are dropped), later ones at once.
fn end(waiting: &Mutex<Waiting>, why: String) {
    tracing::debug!("hub connection ended: {why}");
    let mut waiting = lock(waiting);
    if waiting.ended.is_none() {
        waiting.ended = Some(why);
    }
    waiting.calls.clear();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonrpsee::client_transport::ws::HeaderMap;
    use lanes_proto::hub::{HubAcquireParams, HubClaim, HubGrant, method};

    use super::{CallFailure, HubConnection, batches};

    #[test]
    fn requests_go_in_batches_that_stay_under_the_limit_and_a_big_one_goes_alone() {
        let requests = |sizes: &[usize]| -> Vec<String> { sizes.iter().map(|n| "x".repeat(*n)).collect() };
        assert_eq!(batches(requests(&[3]), 10), ["xxx"], "one request is not a batch");
        assert_eq!(batches(requests(&[2, 3]), 10), ["[xx,xxx]"]);
        let split = batches(requests(&[4, 4, 4]), 12);
        assert_eq!(split, ["[xxxx,xxxx]", "xxxx"], "a batch of all three would take 16 bytes");
        let big = batches(requests(&[2, 20, 2]), 12);
        assert_eq!(big, ["xx", "xxxxxxxxxxxxxxxxxxxx", "xx"], "too big for a batch: alone");
        assert!(batches(Vec::new(), 10).is_empty());
    }

    /// A hub in this process on a free loopback port, on a SQLite store in `dir`.
    async fn start_hub(dir: &std::path::Path) -> String {
        let options = lanes_hub::ServeOptions {
            listen: "127.0.0.1:0".parse().expect("address"),
            store: format!("sqlite:{}", dir.join("hub.db").display()),
            token: None,
            tls: None,
            insecure: false,
            rate_limit: 1000,
        };
        let (ready, listening) = tokio::sync::oneshot::channel();
        tokio::spawn(lanes_hub::serve(
            options,
            move |address| {
                let _ = ready.send(address);
            },
            std::future::pending(),
        ));
        format!("ws://{}", listening.await.expect("the hub listens"))
    }

    fn acquire(holder: &str, path: &str, id: u64) -> Box<serde_json::value::RawValue> {
        let claim = HubClaim {
            id,
            holder: holder.to_owned(),
            scopes: vec![path.to_owned()],
            mode: Default::default(),
            ttl_secs: 60,
        };
        let params = HubAcquireParams { project: "batch".to_owned(), origin: "here".to_owned(), claim };
        serde_json::value::to_raw_value(&params).expect("params")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn grants_asked_at_one_moment_go_as_one_batch_and_each_gets_its_own_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = start_hub(dir.path()).await;
        let hub = HubConnection::connect(&url, HeaderMap::new(), Duration::from_secs(5), Duration::from_secs(5))
            .await
            .expect("connect");
        let hub = &hub;
        // All three are queued before the writer runs (one thread): they reach the hub as one batch, and two
        // of them want the same file.
        let asked = [("ana", "src/x.rs", 1), ("bo", "src/x.rs", 2), ("cy", "src/y.rs", 3)].map(|(holder, path, id)| {
            let params = acquire(holder, path, id);
            async move { hub.request::<HubGrant>(method::ACQUIRE, &params).await }
        });
        let Ok([ana, bo, cy]) = <[_; 3]>::try_from(futures::future::join_all(asked).await) else {
            panic!("three calls, three answers")
        };
        assert!(cy.is_ok(), "a file nobody else wants is granted: {cy:?}");
        let refused = match (ana, bo) {
            (Ok(_), Err(CallFailure::Refused(refused))) | (Err(CallFailure::Refused(refused)), Ok(_)) => refused,
            other => panic!("exactly one of two grants of one file must stand: {other:?}"),
        };
        assert!(refused.message().contains("held by"), "the other is refused as a conflict: {refused:?}");
    }
}
