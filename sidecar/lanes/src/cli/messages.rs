//! `send` and `inbox`.

use lanes_proto::{SendParams, SessionParams, method};

use super::{Env, Failure};
use crate::cli::output::Output;

pub fn send(env: &Env, out: &Output, to: String, text: String) -> Result<(), Failure> {
    let value = env.call(method::MESSAGE_SEND, &SendParams { session: env.session.clone(), to, text })?;
    out.print(&value, |v| {
        let recipients: Vec<&str> =
            v["messages"].as_array().into_iter().flatten().filter_map(|m| m["to"].as_str()).collect();
        if recipients.is_empty() {
            "no other live session to send to".to_owned()
        } else {
            format!("sent to {}; they see it at their next step", recipients.join(", "))
        }
    });
    Ok(())
}

pub fn inbox(env: &Env, out: &Output) -> Result<(), Failure> {
    let params = SessionParams { session: env.session.clone(), ..SessionParams::default() };
    let value = env.call(method::MESSAGE_INBOX, &params)?;
    out.print(&value, |v| {
        let messages = v["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return "no unread messages".to_owned();
        }
        messages
            .iter()
            .map(|m| {
                let at = m["sent_at"].as_str().unwrap_or("?");
                format!("[{at}] {}: {}", m["from"].as_str().unwrap_or("?"), m["text"].as_str().unwrap_or(""))
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
