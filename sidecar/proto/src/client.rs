//! A blocking JSON-RPC client over the sidecar's Unix socket: one request line out, one reply line in, with
//! timeouts. Used by the hook (which must never wait long) and by the CLI.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{ErrorCode, ErrorData, PROTOCOL_VERSION};

/// The longest reply accepted. Replies can be far larger than requests: `status` lists every live claim.
pub const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// A connection to a sidecar.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    next_id: u64,
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
    /// Connects to the socket; every later read and write gives up after `timeout`.
    pub fn connect(socket: &Path, timeout: Duration) -> io::Result<Client> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client { reader: BufReader::new(stream), next_id: 1 })
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
        let mut line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .map_err(|e| CallError::BadReply(e.to_string()))?;
        line.push(b'\n');
        self.reader.get_mut().write_all(&line)?;

        let mut reply = Vec::new();
        let read = Read::take(&mut self.reader, MAX_REPLY_BYTES as u64 + 1).read_until(b'\n', &mut reply)?;
        if read == 0 {
            return Err(CallError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sidecar closed the connection",
            )));
        }
        let reply: Value = serde_json::from_slice(&reply).map_err(|e| CallError::BadReply(e.to_string()))?;
        decode_reply(reply)
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
