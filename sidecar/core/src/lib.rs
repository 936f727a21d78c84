//! The pure domain of lanes: what a claim is, when two claims conflict, and how leases, fencing epochs and
//! handoffs behave.
//!
//! Architecture invariant: this crate does no I/O and reads no clock. Callers pass `now` in, resolve paths
//! against the file system themselves and persist the [`Event`]s it emits. That keeps every rule here
//! deterministic and testable with plain values.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod book;
mod glob;
mod index;
mod messages;
mod pending;
mod redact;
mod scope;
mod tasks;
mod time;
mod waits;

pub use book::{
    AcquireRequest, AgentWorktree, Checkpoint, Claim, ClaimBook, ClaimId, Conflict, Contention, Ensured, Epoch, Event,
    Grant, LapsedNote, MAX_NOTE_BYTES, MAX_SCOPES, Mode, Policy, Principal, Refusal, RefusalCode, ReleaseReason,
    Session, SessionInfo, SessionState, Snapshot, Worktree, describe_conflict,
};
pub use index::OverlapIndex;
pub use messages::{MAX_MESSAGE_BYTES, Message, Recipient, SYSTEM_SENDER};
pub use pending::{Latent, PENDING_EXPIRY, Pending, WorktreeWork};
pub use redact::{MASK, redact};
pub use scope::{Scope, ScopeError};
pub use tasks::{MAX_TITLE_BYTES, Task, TaskStatus};
pub use time::{MAX_TTL, MIN_TTL, Timestamp, human_duration, parse_ttl};
pub use waits::Wait;
