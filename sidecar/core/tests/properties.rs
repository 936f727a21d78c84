//! Property tests of the claim rules: whatever sequence of requests arrives, no two conflicting live claims
//! are ever granted and a grant knows whether it renewed a claim held before; normalization is idempotent;
//! overlap is symmetric; the index never misses an overlap.

use std::time::Duration;

use lanes_core::{
    AcquireRequest, ClaimBook, ClaimId, Contention, Epoch, Mode, Policy, Principal, Scope, Timestamp, Worktree,
};
use proptest::prelude::*;

fn component() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "src", "x.rs", "y.md", "*", "*.rs", "**", "a*", ".", ".."])
}

fn scope_text() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..5).prop_map(|c| c.join("/"))
}

fn scope() -> impl Strategy<Value = Scope> {
    scope_text().prop_filter_map("invalid scope", |s| Scope::parse(&s).ok())
}

fn principal() -> impl Strategy<Value = Principal> {
    (0..3u8, prop::option::of(0..2u8))
        .prop_map(|(s, a)| Principal { session: format!("s{s}"), agent: a.map(|a| format!("agent{a}")) })
}

#[derive(Clone, Debug)]
enum Op {
    Acquire { who: Principal, worktree: u8, scopes: Vec<Scope>, shared: bool, ttl_secs: u64 },
    Release { who: Principal, pick: usize },
    Renew { who: Principal, pick: usize },
    Handoff { who: Principal, pick: usize, to: Principal },
    Wait { secs: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (principal(), 0..2u8, prop::collection::vec(scope(), 1..3), any::<bool>(), 1..120u64)
            .prop_map(|(who, worktree, scopes, shared, ttl_secs)| Op::Acquire { who, worktree, scopes, shared, ttl_secs }),
        1 => (principal(), any::<usize>()).prop_map(|(who, pick)| Op::Release { who, pick }),
        1 => (principal(), any::<usize>()).prop_map(|(who, pick)| Op::Renew { who, pick }),
        1 => (principal(), any::<usize>(), principal()).prop_map(|(who, pick, to)| Op::Handoff { who, pick, to }),
        1 => (0..90u64).prop_map(|secs| Op::Wait { secs }),
    ]
}

fn worktree(n: u8) -> Worktree {
    Worktree { root: format!("/repo/wt{n}"), git_dir: format!("/repo/.git/worktrees/wt{n}") }
}

fn nested(a: &Principal, b: &Principal) -> bool {
    a.session == b.session && (a.agent.is_none() || b.agent.is_none() || a.agent == b.agent)
}

fn assert_no_live_conflict(book: &ClaimBook, contention: Contention, now: Timestamp) {
    let live: Vec<_> = book.claims().filter(|c| c.expires_at > now).collect();
    for (i, a) in live.iter().enumerate() {
        for b in &live[i + 1..] {
            let contended = contention == Contention::Repo || a.worktree == b.worktree;
            let both_shared = a.mode == Mode::Shared && b.mode == Mode::Shared;
            let overlap = a.scopes.iter().any(|x| b.scopes.iter().any(|y| x.overlaps(y)));
            let conflicting = contended && !both_shared && overlap && !nested(&a.holder, &b.holder);
            assert!(!conflicting, "conflicting live claims {a:?} and {b:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_grants_two_conflicting_live_claims(ops in prop::collection::vec(op(), 1..60), per_worktree in any::<bool>()) {
        let contention = if per_worktree { Contention::Worktree } else { Contention::Repo };
        let mut book = ClaimBook::new(Policy { contention, ..Policy::default() });
        let mut now = Timestamp(1_000_000);
        for session in ["s0", "s1", "s2"] {
            book.register_session(session, now);
        }
        let mut grants = 0;
        for op in ops {
            let ids: Vec<ClaimId> = {
                let mut ids: Vec<_> = book.claims().map(|c| c.id).collect();
                ids.sort_unstable();
                ids
            };
            let pick = |p: usize| ids.get(p % ids.len().max(1)).copied().unwrap_or(ClaimId(0));
            match op {
                Op::Acquire { who, worktree: w, scopes, shared, ttl_secs } => {
                    let mode = if shared { Mode::Shared } else { Mode::Exclusive };
                    let request = AcquireRequest {
                        holder: who, worktree: worktree(w), scopes, mode,
                        ttl: Some(Duration::from_secs(ttl_secs)), note: Some("progress".into()), task: None,
                    };
                    let first = grants == 0 && book.claims().next().is_none();
                    let granted = book.acquire(request, now);
                    // On an empty book nothing is in the way: the property is not vacuous.
                    prop_assert!(!first || granted.is_ok(), "the first claim on an empty book was refused: {granted:?}");
                    // A grant says whether its claim was held before (claimed again): with a hub, such a claim
                    // stays held when no hub answers.
                    if let Ok(grant) = &granted {
                        prop_assert_eq!(grant.held_before, ids.contains(&grant.claim.id), "{:?}", grant);
                    }
                    grants += usize::from(granted.is_ok());
                }
                Op::Release { who, pick: p } => { let _ = book.release(&who, &[pick(p)], false, None, now); }
                Op::Renew { who, pick: p } => { let _ = book.renew(&who, pick(p), None, None, now); }
                Op::Handoff { who, pick: p, to } => { let _ = book.handoff(&who, pick(p), to, None, now); }
                Op::Wait { secs } => now = now.after(Duration::from_secs(secs)),
            }
            assert_no_live_conflict(&book, contention, now);
        }
    }

    #[test]
    fn epochs_only_grow(ops in prop::collection::vec(op(), 1..40)) {
        let mut book = ClaimBook::new(Policy::default());
        let now = Timestamp(5_000);
        book.register_session("s1", now);
        let mut last = Epoch(0);
        for op in ops {
            let ids: Vec<ClaimId> = {
                let mut ids: Vec<_> = book.claims().map(|c| c.id).collect();
                ids.sort_unstable();
                ids
            };
            let pick = |p: usize| ids.get(p % ids.len().max(1)).copied().unwrap_or(ClaimId(0));
            // Every grant, renewal and handoff takes a higher epoch than any before it.
            let epoch = match op {
                Op::Acquire { who, scopes, .. } => {
                    let request = AcquireRequest {
                        holder: who, worktree: worktree(0), scopes, mode: Mode::Exclusive, ttl: None, note: None, task: None,
                    };
                    book.acquire(request, now).ok().map(|g| g.claim.epoch)
                }
                Op::Renew { who, pick: p } => book.renew(&who, pick(p), None, None, now).ok().map(|c| c.epoch),
                Op::Handoff { who, pick: p, to } => book.handoff(&who, pick(p), to, None, now).ok().map(|c| c.epoch),
                Op::Release { .. } | Op::Wait { .. } => None,
            };
            if let Some(epoch) = epoch {
                prop_assert!(epoch > last, "epoch {epoch:?} after {last:?}");
                last = epoch;
            }
        }
    }

    #[test]
    fn normalization_is_idempotent(text in scope_text()) {
        if let Ok(scope) = Scope::parse(&text) {
            let again = Scope::parse(&scope.to_string()).expect("a normalized scope parses");
            prop_assert_eq!(&again, &scope);
            prop_assert_eq!(again.to_string(), scope.to_string());
        }
    }

    #[test]
    fn overlap_is_symmetric(a in scope(), b in scope()) {
        prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
    }

    #[test]
    fn overlap_agrees_with_covered_paths(a in scope(), b in scope(), path in prop::collection::vec(prop::sample::select(vec!["a", "b", "src", "x.rs", "y.md"]), 0..5)) {
        let path: Vec<String> = path.into_iter().map(str::to_owned).collect();
        if a.covers(&path) && b.covers(&path) {
            prop_assert!(a.overlaps(&b), "{a} and {b} both cover {path:?} but do not overlap");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any input at all either parses into a scope that stays inside the repository or is refused.
    #[test]
    fn scope_parsing_never_panics_and_never_escapes(text in any::<String>()) {
        if let Ok(scope) = Scope::parse(&text) {
            let shown = scope.to_string();
            prop_assert!(!shown.starts_with('/') && !shown.split('/').any(|c| c == ".."), "{shown}");
        }
    }

    /// The redactor accepts any text and never lets a known token format through.
    #[test]
    fn redaction_never_panics_and_masks_keys(
        prefix in ".{0,40}",
        key in "[A-Za-z0-9]{40}",
        upper in "[A-Z0-9]{16}",
        kind in 0..8usize,
        suffix in ".{0,40}",
    ) {
        // Every token format the redactor claims, with random key material.
        let token = match kind {
            0 => format!("ghp_{key}"),
            1 => format!("github_pat_{key}"),
            2 => format!("glpat-{}", &key[..24]),
            3 => format!("xoxb-{}", &key[..20]),
            4 => format!("AKIA{upper}"),
            5 => format!("AIza{}", &key[..35]),
            6 => format!("sk-ant-api03-{key}"),
            _ => format!("eyJ{}.{}.{}", &key[..12], &key[12..26], &key[26..]),
        };
        let text = format!("{prefix} {token} {suffix}");
        let masked = lanes_core::redact(&text);
        prop_assert!(!masked.contains(&token), "{} kept {}", masked, token);
    }
}
