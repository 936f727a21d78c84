//! The hub's wire (DESIGN.md §9): JSON-RPC over WebSocket between sidecars and `lanes hub serve`.
//!
//! The token travels in the `Authorization: Bearer` header of the WebSocket upgrade, never in a message.
//! A hub claim is named by the sidecar that made it (`origin`) and that sidecar's claim id, so a sidecar can
//! state its whole claim set again after any outage (`hub.sync`) and the hub converges on it.

use serde::{Deserialize, Serialize};

use crate::{ClaimView, EventView, LandEntryView, MessageView, Mode, TaskView};

/// Hub method names.
pub mod method {
    /// Handshake: [`crate::HelloParams`] (as the sidecar's `hello`) → [`super::HubHelloReply`]; refuses another
    /// protocol.
    pub const HELLO: &str = "hub.hello";
    /// Grant one claim, or refuse it naming the claims in the way: [`super::HubAcquireParams`].
    pub const ACQUIRE: &str = "hub.acquire";
    /// A sidecar's whole claim set: renews what is there, grants what is missing, releases the rest.
    pub const SYNC: &str = "hub.sync";
    /// Release some of a sidecar's claims at once (what `claim.release` answers only after):
    /// [`super::HubReleaseParams`] → [`super::HubReleaseReply`]; ids the hub does not hold are left out.
    pub const RELEASE: &str = "hub.release";
    /// The live claims of a project.
    pub const CLAIMS: &str = "hub.claims";
    /// Append a sidecar's events after a cursor (idempotent).
    pub const PUSH: &str = "hub.push";
    /// The events the hub holds from one sidecar, after a cursor.
    pub const EVENTS: &str = "hub.events";
    /// Leave a message for a session of another machine: [`super::HubSendParams`] → [`super::HubSendReply`];
    /// `not_found` when no other machine has that session live.
    pub const SEND: &str = "hub.send";
    /// Take (once) the messages waiting for a sidecar's sessions: [`super::HubMailParams`] →
    /// [`super::HubMailReply`].
    pub const MAIL: &str = "hub.mail";
    /// The hub's figures for each project it served since it started (`lanes hub status`):
    /// [`super::HubStatusParams`] → [`super::HubStatusReply`].
    pub const STATUS: &str = "hub.status";
}

/// `hub.hello` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubHelloReply {
    /// The hub's lanes version.
    pub version: String,
    /// The hub's protocol version.
    pub protocol: u32,
    /// `sqlite` or `etcd`.
    pub store: String,
}

/// One claim as a sidecar states it to the hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HubClaim {
    /// The sidecar's claim id.
    pub id: u64,
    /// `session` or `session/agent`.
    pub holder: String,
    /// Repo-relative scopes.
    pub scopes: Vec<String>,
    /// Exclusive or shared.
    #[serde(default)]
    pub mode: Mode,
    /// Seconds the lease has left.
    pub ttl_secs: u64,
}

/// `hub.acquire` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubAcquireParams {
    /// The repository's identity (its configured project or normalized origin URL).
    pub project: String,
    /// The sidecar's stable identity.
    pub origin: String,
    /// The claim.
    pub claim: HubClaim,
}

/// `hub.acquire` reply (a refusal is a `conflict` error whose data lists the claims in the way).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubGrant {
    /// The fencing epoch the hub gave this grant (the etcd revision, on etcd).
    pub epoch: u64,
}

/// `hub.sync` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubSyncParams {
    /// The project.
    pub project: String,
    /// The sidecar.
    pub origin: String,
    /// The highest claim id the sidecar had made when it took this list: hub claims of this origin up to it
    /// that are not listed are released; later ones were granted since and are kept.
    pub upto: u64,
    /// Every live claim of the sidecar.
    pub claims: Vec<HubClaim>,
}

/// `hub.sync` reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HubSyncReply {
    /// Claims renewed or granted.
    pub held: Vec<u64>,
    /// Claims released because the sidecar no longer lists them.
    pub released: Vec<u64>,
    /// Claims the hub could not grant again (another machine took the scope meanwhile).
    pub refused: Vec<u64>,
}

/// `hub.release` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubReleaseParams {
    /// The project.
    pub project: String,
    /// The sidecar.
    pub origin: String,
    /// The sidecar's claim ids to release.
    pub ids: Vec<u64>,
}

/// `hub.release` reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HubReleaseReply {
    /// The claims released (those the hub held for this sidecar).
    pub released: Vec<u64>,
}

/// Params naming a project.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubProjectParams {
    /// The project.
    pub project: String,
}

/// `hub.status` params.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HubStatusParams {
    /// Only this project (default: every project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `hub.status` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubStatusReply {
    /// The hub's lanes version.
    pub version: String,
    /// `sqlite` or `etcd`.
    pub store: String,
    /// The projects, by name.
    pub projects: Vec<HubProjectFigures>,
}

/// One project's figures at the hub.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HubProjectFigures {
    /// The project.
    pub project: String,
    /// Its live claims, from every machine.
    pub claims: usize,
    /// The sidecars that said they are here within the last 30 s.
    pub sidecars: usize,
    /// Grants per second over the last 10 s, at this hub.
    pub grants_per_s: f64,
    /// The median time this hub took to decide a grant (the conflict check and the store's write), ms.
    pub decision_p50_ms: f64,
    /// Its 99th percentile, ms.
    pub decision_p99_ms: f64,
}

/// A live claim on the hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HubClaimView {
    /// The sidecar that holds it.
    pub origin: String,
    /// The claim as that sidecar stated it.
    #[serde(flatten)]
    pub claim: HubClaim,
    /// Its fencing epoch.
    pub epoch: u64,
}

/// `hub.claims` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubClaimsReply {
    /// Live claims of the project.
    pub claims: Vec<HubClaimView>,
}

/// `hub.push` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubPushParams {
    /// The project.
    pub project: String,
    /// The sidecar.
    pub origin: String,
    /// The last sequence number the sidecar believes the hub has; the first event must follow it.
    pub after: u64,
    /// Events in order, from `after + 1` on, without gaps.
    pub events: Vec<EventView>,
}

/// `hub.push` reply, and `hub.events` cursor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubCursor {
    /// The last sequence number the hub holds from this origin; the next push starts after it.
    pub cursor: u64,
}

/// `hub.events` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubEventsParams {
    /// The project.
    pub project: String,
    /// The sidecar.
    pub origin: String,
    /// Events after this sequence number.
    #[serde(default)]
    pub after: u64,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `hub.events` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubEventsReply {
    /// Events in order.
    pub events: Vec<EventView>,
    /// The last sequence number the hub holds from this origin.
    pub cursor: u64,
}

/// `hub.send` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubSendParams {
    /// The project.
    pub project: String,
    /// The sending sidecar.
    pub origin: String,
    /// The message (its `id` is the sender's; `to` is a session, or `@all` for every live session of the other
    /// machines).
    pub message: MessageView,
}

/// `hub.send` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubSendReply {
    /// The sessions it was left for.
    pub to: Vec<String>,
}

/// `hub.mail` params.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubMailParams {
    /// The project.
    pub project: String,
    /// The asking sidecar.
    pub origin: String,
    /// Its live sessions.
    pub sessions: Vec<String>,
    /// Record `sessions` as the ones live on this sidecar (the hub forgets a sidecar that has not said so for
    /// 30 s); without it, only take their mail.
    #[serde(default)]
    pub present: bool,
    /// With `present`: what the sidecar knows of each live session, for the hub's web view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub briefs: Vec<HubSessionBrief>,
    /// With `present`: the machine's task board, landing queue and pending work, for the hub's web view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<HubBoard>,
}

/// What the hub's web view shows of a machine beside its sessions: each list at most [`HubBoard::MAX_ITEMS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HubBoard {
    /// Its task board.
    #[serde(default)]
    pub tasks: Vec<TaskView>,
    /// Its landing queue: entries waiting or landing in order, then the finished ones, newest first.
    #[serde(default)]
    pub queue: Vec<LandEntryView>,
    /// Its claims that are pending work: their holders ended before their paths landed on the base branch.
    #[serde(default)]
    pub pending: Vec<ClaimView>,
}

impl HubBoard {
    /// The most items a sidecar sends in each list (the hub refuses more).
    pub const MAX_ITEMS: usize = 200;
    /// The most bytes a board takes as JSON (the hub refuses more): it is stored with the machine's presence,
    /// one etcd value, and a task's note or a landing's test output can be long.
    pub const MAX_BYTES: usize = 256 * 1024;

    /// Its size as JSON.
    pub fn bytes(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |json| json.len())
    }

    /// Keeps the board within [`HubBoard::MAX_BYTES`] by halving its longest list until it fits.
    pub fn fit(&mut self) {
        while self.bytes() > Self::MAX_BYTES {
            let (tasks, queue, pending) = (self.tasks.len(), self.queue.len(), self.pending.len());
            if tasks >= queue && tasks >= pending && tasks > 0 {
                self.tasks.truncate(tasks / 2);
            } else if queue >= pending && queue > 0 {
                self.queue.truncate(queue / 2);
            } else if pending > 0 {
                self.pending.truncate(pending / 2);
            } else {
                return;
            }
        }
    }
}

/// A live session as its sidecar describes it to the hub (`hub.mail` with `present`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HubSessionBrief {
    /// The session id.
    pub id: String,
    /// The agent CLI it runs in (`claude`, `codex`, ...).
    #[serde(default)]
    pub client: Option<String>,
    /// The branch its worktree is on.
    #[serde(default)]
    pub branch: Option<String>,
    /// Its worktree on that machine.
    #[serde(default)]
    pub worktree: Option<String>,
}

/// `hub.mail` reply: the messages, now taken from the hub.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HubMailReply {
    /// Oldest first.
    pub messages: Vec<MessageView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, note_bytes: usize) -> TaskView {
        TaskView {
            id,
            title: format!("task {id}"),
            status: "open".into(),
            after: Vec::new(),
            scopes: Vec::new(),
            holder: None,
            claim: None,
            note: Some("n".repeat(note_bytes)),
        }
    }

    #[test]
    fn a_board_too_big_for_one_presence_is_cut_to_fit_keeping_the_first_items() {
        let mut board = HubBoard { tasks: (0..200).map(|id| task(id, 8 * 1024)).collect(), ..HubBoard::default() };
        assert!(board.bytes() > HubBoard::MAX_BYTES);
        board.fit();
        assert!(board.bytes() <= HubBoard::MAX_BYTES, "{} bytes", board.bytes());
        assert!(!board.tasks.is_empty() && board.tasks[0].id == 0, "the board keeps what comes first");

        let small = HubBoard { tasks: vec![task(1, 10)], ..HubBoard::default() };
        let mut kept = small.clone();
        kept.fit();
        assert_eq!(kept, small, "a board that fits is left whole");
    }
}
