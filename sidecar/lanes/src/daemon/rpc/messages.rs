//! Messages: `message.send` (to sessions here and, with a hub, on other machines) and `message.inbox`.

use jsonrpsee::types::Params;
use lanes_core::{Message, Recipient};
use lanes_proto::{ErrorCode, MessageView, MessagesReply, SendParams, SessionParams, method};

use super::{Context, Methods, RpcResult, add, error, parse, principal, reply, rfc3339};
use crate::daemon::state::{Answer, Command, now};

pub(super) fn register(module: &mut Methods) {
    add(module, method::MESSAGE_SEND, |p, cx| async move { send(p, &cx).await });
    add(module, method::MESSAGE_INBOX, |p, cx| async move { inbox(p, &cx).await });
}

/// Sends to sessions of this machine and, with a hub, of the others: a session unknown here is looked for
/// on the hub, and `--all` reaches every live session of every machine.
async fn send(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: SendParams = parse(&params)?;
    let from = principal(&p.session)?.session;
    let to = Recipient::parse(&p.to);
    let command = Command::Send { from: from.clone(), to: to.clone(), text: p.text.clone() };
    let mut messages: Vec<MessageView> = match cx.ask(command).await {
        Ok(Answer::Messages(sent)) => sent.iter().map(message_view).collect(),
        Ok(_) => unreachable!("send answers Messages"),
        Err(e) if cx.hub.is_some() && e.code() == ErrorCode::NotFound.rpc_code() => Vec::new(),
        Err(e) => return Err(e),
    };
    let Some(hub) = &cx.hub else { return reply(&MessagesReply { messages }) };
    let remote_to = match (&to, messages.is_empty()) {
        (Recipient::All, _) => "@all",
        (Recipient::Session(name), true) => name.as_str(),
        (Recipient::Session(_), false) => return reply(&MessagesReply { messages }),
    };
    match hub.send(&from, remote_to, &p.text).await {
        Ok(reached) => messages.extend(reached.into_iter().map(|to| MessageView {
            id: 0,
            from: from.clone(),
            to,
            text: lanes_core::redact(&p.text),
            sent_at: rfc3339(now()),
        })),
        // `--all`: the other machines being out of reach costs the local sends nothing.
        Err(e) if matches!(to, Recipient::All) => tracing::warn!("a message to all reached this machine only: {e:?}"),
        Err(crate::daemon::hub_link::HubFailure::Refused(e)) => return Err(e),
        Err(crate::daemon::hub_link::HubFailure::Unavailable(message)) => {
            return Err(error(
                ErrorCode::Unavailable,
                format!(
                    "no session {remote_to} is known here, and no hub answers to look on the other machines ({message})"
                ),
                Vec::new(),
            ));
        }
    }
    reply(&MessagesReply { messages })
}

async fn inbox(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: SessionParams = parse(&params)?;
    let session = principal(&p.session)?.session;
    let Answer::Messages(messages) = cx.ask(Command::Inbox { session }).await? else {
        unreachable!("inbox answers Messages")
    };
    reply(&MessagesReply { messages: messages.iter().map(message_view).collect() })
}

pub(super) fn message_view(message: &Message) -> MessageView {
    MessageView {
        id: message.id,
        from: message.from.clone(),
        to: message.to.clone(),
        text: message.text.clone(),
        sent_at: rfc3339(message.sent_at),
    }
}
