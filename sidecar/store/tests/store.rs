//! The store round-trips the claim book through SQLite: what was committed comes back after a reopen.

use std::time::Duration;

use lanes_core::{AcquireRequest, ClaimBook, Mode, Policy, Principal, Scope, Timestamp, Worktree};
use lanes_store::{Commit, Durability, Store};

fn request(session: &str, scope: &str, note: Option<&str>) -> AcquireRequest {
    AcquireRequest {
        holder: Principal::parse(session).expect("valid"),
        worktree: Worktree { root: "/r".into(), git_dir: "/r/.git".into() },
        scopes: vec![Scope::parse(scope).expect("valid")],
        mode: Mode::Exclusive,
        ttl: Some(Duration::from_secs(60)),
        note: note.map(str::to_owned),
        task: None,
    }
}

#[test]
fn committed_state_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path, Durability::Full).expect("open");
    let mut book = ClaimBook::restore(Policy::default(), store.load().expect("load"));
    let now = Timestamp(1_000_000);
    let a = book.acquire(request("alice", "src/a.rs", None), now).expect("grant").claim;
    let b = book.acquire(request("bob", "docs", Some("half done")), now).expect("grant").claim;
    book.renew(&a.holder, a.id, None, None, now.after(Duration::from_secs(10))).expect("renew");
    // Grants must reach the disk before they are answered; a lapse need not.
    let commit = store.commit(&book.take_events(), book.epoch(), book.next_id()).expect("commit");
    assert_eq!(commit, Commit::NeedsSync);
    store.wal_sync().expect("wal").sync().expect("sync");
    // Bob's claim lapses; its note waits for the next claimant.
    book.expire_due(now.after(Duration::from_secs(61)));
    let commit = store.commit(&book.take_events(), book.epoch(), book.next_id()).expect("commit");
    assert_eq!(commit, Commit::Done);
    drop(store);

    let store = Store::open(&path, Durability::Full).expect("reopen");
    let restored = ClaimBook::restore(Policy::default(), store.load().expect("load"));
    let claims: Vec<_> = restored.claims().cloned().collect();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0], book.claim(a.id).expect("live").clone());
    assert_eq!(restored.epoch(), book.epoch());
    assert_eq!(restored.next_id(), book.next_id());
    let mut restored = restored;
    let grant =
        restored.acquire(request("carol", "docs/x.md", None), now.after(Duration::from_secs(70))).expect("grant");
    assert_eq!(grant.notes.len(), 1);
    assert_eq!(grant.notes[0].note, "half done");
    assert_eq!(grant.notes[0].claim, b.id);
    let kinds: Vec<String> = store.events_since(0, 100).expect("events").into_iter().map(|e| e.kind).collect();
    // The lapse also queues a message telling bob, which survives the restart.
    assert_eq!(kinds, ["session_start", "grant", "session_start", "grant", "renew", "expire", "message"]);
    let told = restored.take_inbox("bob", now);
    assert_eq!(told.len(), 1);
    assert!(told[0].text.contains("expired"), "{}", told[0].text);
    assert_eq!(store.schema_version().expect("version"), 8);
}

#[test]
fn process_durability_never_asks_for_a_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("state.db"), Durability::Process).expect("open");
    let mut book = ClaimBook::restore(Policy::default(), store.load().expect("load"));
    book.acquire(request("alice", "src", None), Timestamp(1_000)).expect("grant");
    let commit = store.commit(&book.take_events(), book.epoch(), book.next_id()).expect("commit");
    assert_eq!(commit, Commit::Done);
}
