//! A blocking JSON-RPC client over the sidecar's Unix socket: one request line out, one reply line in, with
//! timeouts. Used by the hook (which must never wait long) and by the CLI.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{ErrorCode, ErrorData, PROTOCOL_VERSION};

/// The longest reply accepted. Replies can be far larger than requests: `status` lists every live claim.
pub const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// A connection to a sidecar.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    next_id: u64,
    /// Whether the next call polls for its reply: only while replies come within [`REPLY_POLL`].
    poll: bool,
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The socket failed or timed out.
    Io(io::Error),
    /// The sidecar speaks another protocol version.
    ProtocolMismatch {
        /// The sidecar's version.
        theirs: u32,
    },
    /// The sidecar refused the request.
    Refused {
        /// The string code.
        code: ErrorCode,
        /// What happened and what to do.
        message: String,
        /// The `error.data` object, with `conflicts` for a conflict.
        data: Value,
    },
    /// The reply could not be understood.
    BadReply(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "sidecar connection failed: {e}"),
            CallError::ProtocolMismatch { theirs } => {
                write!(f, "sidecar speaks protocol {theirs}, this client {PROTOCOL_VERSION}")
            }
            CallError::Refused { message, .. } => f.write_str(message),
            CallError::BadReply(why) => write!(f, "unexpected reply from the sidecar: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> CallError {
        CallError::Io(e)
    }
}

impl Client {
    /// Connects to the socket; every later read and write gives up after `timeout`. The socket must be ours,
    /// in a directory only we can write (see [`crate::paths::check_private`]): nothing is sent to a socket
    /// another user could have planted.
    pub fn connect(socket: &Path, timeout: Duration) -> io::Result<Client> {
        crate::paths::check_socket(socket)?;
        Client::over(UnixStream::connect(socket)?, timeout)
    }

    fn over(stream: UnixStream, timeout: Duration) -> io::Result<Client> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client { reader: BufReader::new(stream), next_id: 1, poll: true })
    }

    /// Changes the timeout of later reads and writes.
    pub fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        self.reader.get_ref().set_write_timeout(Some(timeout))
    }

    /// Calls `method` and decodes its result.
    pub fn call<P: Serialize, R: DeserializeOwned>(&mut self, method: &str, params: &P) -> Result<R, CallError> {
        let value = self.call_value(method, params)?;
        serde_json::from_value(value).map_err(|e| CallError::BadReply(e.to_string()))
    }

    /// Calls `method` and returns its raw result object.
    pub fn call_value<P: Serialize>(&mut self, method: &str, params: &P) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = Request::new(id, method, params);
        let mut line = serde_json::to_vec(&request).map_err(|e| CallError::BadReply(e.to_string()))?;
        line.push(b'\n');
        self.reader.get_mut().write_all(&line)?;
        let sent = Instant::now();
        if self.poll && self.reader.buffer().is_empty() {
            poll_for_reply(&mut self.reader, REPLY_POLL)?;
        }

        let mut reply = Vec::new();
        let read = Read::take(&mut self.reader, MAX_REPLY_BYTES as u64 + 1).read_until(b'\n', &mut reply)?;
        if read == 0 {
            return Err(CallError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sidecar closed the connection",
            )));
        }
        // A reply that took longer than the window (one the hub had to confirm, say) is likely followed by
        // more like it: polling for them would only take the CPU their answer needs, from every waiting client
        // at once. The next fast reply turns polling on again.
        self.poll = sent.elapsed() <= REPLY_POLL;
        let reply: Value = serde_json::from_slice(&reply).map_err(|e| CallError::BadReply(e.to_string()))?;
        decode_reply(reply)
    }
}

/// How long a call polls for its reply before it sleeps. A sleeping thread is woken by the kernel, and on a
/// virtual machine that costs both sides: 25–50 µs before the sleeper runs, and several µs of the sidecar's
/// own time to wake it. Most replies come well within the window (a grant's fdatasync is ~0.1 ms); under load
/// the sidecar is spared the wake-ups. Polling yields the CPU between tries, and costs at most this per call.
const REPLY_POLL: Duration = Duration::from_millis(1);

/// Polls the socket for the first bytes of the reply for up to `window`, leaving them in the buffer; a reply
/// still on its way after that is waited for by the blocking read that follows.
fn poll_for_reply(reader: &mut BufReader<UnixStream>, window: Duration) -> io::Result<()> {
    reader.get_ref().set_nonblocking(true)?;
    let started = Instant::now();
    let polled = loop {
        match reader.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && started.elapsed() < window => {
                std::thread::yield_now();
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => break Ok(()),
            Err(e) => break Err(e),
            Ok(_) => break Ok(()),
        }
    };
    reader.get_ref().set_nonblocking(false)?;
    polled
}

/// A JSON-RPC request, serialized straight from the caller's params (no intermediate `Value`): the
/// sidecar's request lines, and the sidecar's own requests to its hub.
#[derive(Serialize)]
pub struct Request<'a, P: ?Sized> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a P,
}

impl<'a, P: ?Sized> Request<'a, P> {
    /// Request `id`: `method` with `params`.
    pub fn new(id: u64, method: &'a str, params: &'a P) -> Request<'a, P> {
        Request { jsonrpc: "2.0", id, method, params }
    }
}

/// Splits a JSON-RPC reply into its result or a [`CallError`], checking the protocol version it carries.
pub fn decode_reply(mut reply: Value) -> Result<Value, CallError> {
    if let Some(error) = reply.get_mut("error").map(Value::take) {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
        let data = error.get("data").cloned().unwrap_or(Value::Null);
        return match serde_json::from_value::<ErrorData>(data.clone()) {
            Ok(parsed) if parsed.protocol != PROTOCOL_VERSION => {
                Err(CallError::ProtocolMismatch { theirs: parsed.protocol })
            }
            Ok(parsed) => Err(CallError::Refused { code: parsed.code, message, data }),
            Err(_) => {
                let code = match error.get("code").and_then(Value::as_i64) {
                    Some(-32700 | -32600 | -32601 | -32602) => ErrorCode::InvalidArgument,
                    _ => ErrorCode::Internal,
                };
                Err(CallError::Refused { code, message, data })
            }
        };
    }
    let result = reply.get_mut("result").map(Value::take).ok_or_else(|| CallError::BadReply("no result".into()))?;
    match result.get("protocol").and_then(Value::as_u64) {
        Some(p) if p == u64::from(PROTOCOL_VERSION) => Ok(result),
        Some(p) => Err(CallError::ProtocolMismatch { theirs: u32::try_from(p).unwrap_or(u32::MAX) }),
        None => Err(CallError::BadReply("the reply carries no protocol version".into())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A peer that reads one request line, waits `delay`, then answers it (or hangs up when `reply` is false).
    fn peer(delay: Duration, reply: bool) -> Client {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(theirs);
            let mut request = String::new();
            reader.read_line(&mut request).expect("request");
            std::thread::sleep(delay);
            if reply {
                let id: Value = serde_json::from_str::<Value>(&request).expect("json")["id"].clone();
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"protocol": PROTOCOL_VERSION, "ok": true}});
                writeln!(reader.get_mut(), "{answer}").expect("reply");
            }
        });
        Client::over(ours, Duration::from_secs(5)).expect("client")
    }

    #[test]
    fn a_prompt_reply_is_read() {
        let result = peer(Duration::ZERO, true).call_value("status", &json!({})).expect("reply");
        assert_eq!(result["ok"], true);
    }

    #[test]
    fn a_reply_after_the_poll_window_is_waited_for() {
        let result = peer(REPLY_POLL * 20, true).call_value("status", &json!({})).expect("reply");
        assert_eq!(result["ok"], true);
    }

    #[test]
    fn a_peer_that_hangs_up_is_reported() {
        let error = peer(Duration::ZERO, false).call_value("status", &json!({})).expect_err("no reply");
        assert!(error.to_string().contains("closed the connection"), "{error}");
    }
}
