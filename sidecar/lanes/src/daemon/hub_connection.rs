//! One WebSocket to a hub, speaking JSON-RPC: a caller writes its request itself and a reader task hands
//! each answer to the call that waits for it.
//!
//! jsonrpsee's client does the same through a background task and a `futures-timer` thread that it wakes
//! twice per request (a request timeout is registered and dropped each time): on a loaded 2-core machine
//! those hops cost the sidecar more than the request itself, and every grant and release makes one. The
//! WebSocket itself (handshake, TLS, headers, frames) is still jsonrpsee's transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::client_transport::ws::{EitherStream, HeaderMap, Receiver, Sender, Url, WsTransportClientBuilder};
use jsonrpsee::core::client::{ReceivedMessage, TransportReceiverT, TransportSenderT};
use jsonrpsee::types::ErrorObjectOwned;
use lanes_proto::client::Request;
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

/// The calls waiting for their answers, until the connection ends.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, tokio::sync::oneshot::Sender<Answer>>,
    /// Why the connection ended, once it has: later calls fail at once.
    ended: Option<String>,
}

/// A connected hub.
pub struct HubConnection {
    sender: tokio::sync::Mutex<Sender<Stream>>,
    waiting: Arc<Mutex<Waiting>>,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Drop for HubConnection {
    fn drop(&mut self) {
        // The reader would otherwise hold the socket open until the hub closes it.
        self.reader.abort();
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
        let reader = tokio::spawn(read_answers(receiver, Arc::clone(&waiting)));
        Ok(HubConnection {
            sender: tokio::sync::Mutex::new(sender),
            waiting,
            next_id: AtomicU64::new(1),
            reader,
            timeout,
        })
    }

    /// Whether the connection still stands.
    pub fn is_connected(&self) -> bool {
        lock(&self.waiting).ended.is_none()
    }

    /// Calls `method` with `params` (a JSON object) and decodes its result.
    pub async fn request<R: DeserializeOwned>(&self, method: &str, params: &RawValue) -> Result<R, CallFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = tokio::sync::oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if let Some(why) = &waiting.ended {
                return Err(CallFailure::Lost(why.clone()));
            }
            waiting.calls.insert(id, answer);
        }
        let exchange = async {
            let request = serde_json::to_string(&Request::new(id, method, params))
                .map_err(|e| CallFailure::Lost(format!("could not write the request: {e}")))?;
            self.sender.lock().await.send(request).await.map_err(|e| CallFailure::Lost(e.to_string()))?;
            answered.await.map_err(|_| CallFailure::Lost(self.why_ended()))
        };
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

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let answer: AnswerLine = match serde_json::from_str(&text) {
            Ok(answer) => answer,
            Err(e) => break format!("the hub sent something that is not a JSON-RPC answer: {e}"),
        };
        let Some(id) = answer.id else { continue };
        let Some(call) = lock(&waiting).calls.remove(&id) else { continue };
        let answer = match (answer.result, answer.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Err(ErrorObjectOwned::owned(-32603, "the hub's answer has no result", None::<()>)),
        };
        // The call may have timed out meanwhile: nobody to tell.
        let _ = call.send(answer);
    };
    tracing::debug!("hub connection ended: {why}");
    let mut waiting = lock(&waiting);
    waiting.ended = Some(why);
    waiting.calls.clear();
}
