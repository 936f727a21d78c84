//! The sidecar itself: `hello`, `status`, `events` and `shutdown`.

use jsonrpsee::types::Params;
use lanes_core::Timestamp;
use lanes_proto::{
    EventView, EventsParams, EventsReply, HelloParams, HelloReply, PROTOCOL_VERSION, SessionView, StatusReply, method,
};

use serde_json::Value;

use super::{Context, Methods, RpcResult, add, claim_view, parse, reply, rfc3339, tasks};
use crate::daemon::state::{Answer, Command};

pub(super) fn register(module: &mut Methods) {
    add(module, method::HELLO, |p, cx| async move { hello(p, &cx) });
    add(module, method::STATUS, |_, cx| async move { status(&cx).await });
    add(module, method::EVENTS, |p, cx| async move { events(p, &cx).await });
    add(module, method::SHUTDOWN, |_, cx| async move { shutdown(&cx) });
}

fn hello(params: Params<'static>, cx: &Context) -> RpcResult {
    let hello: HelloParams = parse(&params)?;
    tracing::debug!("hello from {} {} (protocol {})", hello.client, hello.version, hello.protocol);
    reply(&HelloReply { version: cx.sidecar.version.clone(), protocol: PROTOCOL_VERSION, pid: cx.sidecar.pid })
}

async fn status(cx: &Context) -> RpcResult {
    let Answer::Status(snapshot) = cx.ask(Command::Status).await? else { unreachable!("status answers Status") };
    let sessions = snapshot
        .sessions
        .iter()
        .map(|line| SessionView {
            id: line.id.clone(),
            state: if line.session.live { "live" } else { "ended" }.to_owned(),
            claims: snapshot.claims.iter().filter(|c| c.holder.session == line.id).count(),
            worktree: line.session.info.worktree.clone(),
            branch: cx.branch_of(&line.session.info),
            unread: line.unread,
            model: line.session.info.model.clone(),
            source: line.session.info.source.clone(),
            client: line.session.info.client.clone(),
            started_at: Some(rfc3339(line.session.started_at)),
            ended_at: line.session.ended_at.map(rfc3339),
            last_checkpoint: line.last_checkpoint.clone(),
            last_prompt: line.last_prompt.clone(),
        })
        .collect();
    reply(&StatusReply {
        repo: cx.common_dir.to_string_lossy().into_owned(),
        sidecar: cx.sidecar.clone(),
        sessions,
        claims: snapshot.claims.iter().map(|c| claim_view(c, snapshot.now)).collect(),
        tasks: snapshot.tasks.iter().map(|(t, ready, stalled)| tasks::view(t, *ready, *stalled)).collect(),
        hub: match &cx.hub {
            // With a hub, status sees what the hub sees: the claims of the other machines too.
            Some(hub) => {
                let mut view = hub.view();
                if hub.refusal_while_down().is_none() {
                    view["claims"] = hub.remote_claims().await.ok().map_or(Value::Null, |c| serde_json::json!(c));
                }
                Some(view)
            }
            None => None,
        },
        epoch: snapshot.epoch.0,
    })
}

async fn events(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: EventsParams = if params.as_str().is_some() { parse(&params)? } else { EventsParams::default() };
    let limit = p.limit.unwrap_or(1000).clamp(1, 10_000);
    let Answer::Events(logged) = cx.ask(Command::Events { since: p.since, limit }).await? else {
        unreachable!("events answers Events")
    };
    let cursor = logged.last().map_or(p.since, |e| e.seq);
    reply(&EventsReply { events: logged.into_iter().map(event_view).collect(), cursor })
}

/// An event of the log as the wire shows it.
pub(crate) fn event_view(e: lanes_store::LoggedEvent) -> EventView {
    let mut data = e.data;
    // The log keeps times as epoch milliseconds; the wire shows every time as ISO 8601.
    if let Some(fields) = data.as_object_mut() {
        for (key, value) in fields.iter_mut() {
            if (key == "at" || key.ends_with("_at"))
                && let Some(ms) = value.as_u64()
            {
                *value = Value::String(rfc3339(Timestamp(ms)));
            }
        }
    }
    EventView { seq: e.seq, at: rfc3339(e.at), kind: e.kind, session: e.session, claim: e.claim, data }
}

fn shutdown(cx: &Context) -> RpcResult {
    cx.shutdown.notify_one();
    reply(&serde_json::json!({"stopping": true}))
}
