//! One project's claim space as a hub sees it: the decision rules, with no I/O and `now` passed in. Both
//! stores keep one of these per project (SQLite as its only copy in memory, etcd as a cache fed by a watch)
//! and ask it who is in the way before they write.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lanes_core::{OverlapIndex, Scope};
use lanes_proto::hub::{HubClaim, HubClaimView};
use lanes_proto::{ConflictView, Mode};
use serde::{Deserialize, Serialize};

/// A claim as the hub stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// The sidecar that holds it.
    pub origin: String,
    /// The claim as that sidecar stated it.
    pub claim: HubClaim,
    /// Its fencing epoch.
    pub epoch: u64,
    /// When its lease runs out, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Its etcd lease (0 on SQLite).
    #[serde(default)]
    pub lease: i64,
}

impl Held {
    /// The claim as `hub.claims` shows it.
    pub fn view(&self, now_ms: u64) -> HubClaimView {
        let mut claim = self.claim.clone();
        claim.ttl_secs = self.expires_at_ms.saturating_sub(now_ms) / 1000;
        HubClaimView { origin: self.origin.clone(), claim, epoch: self.epoch }
    }
}

/// Some of a project's live claims, and how many there are ([`Space::some_live`]).
#[derive(Debug, Default)]
pub struct SomeClaims {
    /// Live claims in all.
    pub total: usize,
    /// The ones asked for.
    pub shown: Vec<HubClaimView>,
    /// Live claims per (origin, session), a session's agents included.
    pub per_session: HashMap<(String, String), usize>,
}

/// The session of a claim's holder (`session` or `session/agent`): a subagent's claims are its session's.
pub fn session_of(holder: &str) -> &str {
    holder.split('/').next().unwrap_or_default()
}

/// A claim's name at the hub: the sidecar that made it and that sidecar's claim id.
type Key = (String, u64);

/// The live claims of one project, with the overlap index the sidecar's book uses (lanes-core): a decision
/// walks the paths near the wanted scopes, not every claim of the project.
#[derive(Debug, Default)]
pub struct Space {
    held: BTreeMap<Key, (Held, Vec<Scope>)>,
    index: OverlapIndex<Key>,
}

/// Checks a claim as a sidecar states it (holder, lease length) and parses its scopes, refusing any that
/// would leave the repository. Every store checks claims through this before it writes anything.
pub fn check_claim(claim: &HubClaim) -> Result<Vec<Scope>, String> {
    if claim.holder.is_empty() || claim.holder.len() > 256 {
        return Err("a claim's holder must be 1 to 256 bytes".to_owned());
    }
    let ttl = std::time::Duration::from_secs(claim.ttl_secs);
    if !(lanes_core::MIN_TTL..=lanes_core::MAX_TTL).contains(&ttl) {
        return Err(format!(
            "ttl_secs must be between 1 and {}, not {}",
            lanes_core::MAX_TTL.as_secs(),
            claim.ttl_secs
        ));
    }
    parse_scopes(claim)
}

/// Whether two holders (`session` or `session/agent`) never contend: the same principal, or a session and one
/// of its own subagents (DESIGN.md §5). Sibling subagents contend.
fn nested(a: &str, b: &str) -> bool {
    let split = |h: &str| h.split_once('/').map_or((h.to_owned(), None), |(s, a)| (s.to_owned(), Some(a.to_owned())));
    let ((session_a, agent_a), (session_b, agent_b)) = (split(a), split(b));
    session_a == session_b && (agent_a.is_none() || agent_b.is_none() || agent_a == agent_b)
}

/// Parses a claim's scopes, refusing any that would leave the repository.
fn parse_scopes(claim: &HubClaim) -> Result<Vec<Scope>, String> {
    if claim.scopes.is_empty() {
        return Err("a claim needs at least one scope".to_owned());
    }
    if claim.scopes.len() > lanes_core::MAX_SCOPES {
        return Err(format!("too many scopes ({}): at most {}", claim.scopes.len(), lanes_core::MAX_SCOPES));
    }
    claim.scopes.iter().map(|s| Scope::parse(s).map_err(|e| e.0)).collect()
}

impl Space {
    /// The live claims of other holders that stand in the way of `claim`. A sidecar's own earlier version of
    /// the same claim is not in the way.
    pub fn conflicts(&self, origin: &str, claim: &HubClaim, now_ms: u64) -> Result<Vec<ConflictView>, String> {
        let found = self.in_the_way(origin, claim, now_ms)?;
        Ok(found
            .into_iter()
            .map(|((held_origin, id), held, scope)| ConflictView {
                claim_id: id,
                session: Some(held.claim.holder.clone()),
                scope: scope.to_string(),
                worktree: format!("{held_origin} (through the hub)"),
                expires_at: rfc3339(held.expires_at_ms),
                expires_in_secs: held.expires_at_ms.saturating_sub(now_ms).div_ceil(1000),
                pending: false,
                latent: false,
                branch: None,
                left_at: None,
                client: None,
            })
            .collect())
    }

    /// The names of the live claims of other holders that stand in the way of `claim`: what a store re-reads
    /// before it believes a refusal.
    pub fn blockers(&self, origin: &str, claim: &HubClaim, now_ms: u64) -> Vec<(String, u64)> {
        self.in_the_way(origin, claim, now_ms).unwrap_or_default().into_iter().map(|(key, ..)| key).collect()
    }

    /// Each live claim of another holder that overlaps `claim`, once, with the first of its scopes found in
    /// the way.
    fn in_the_way(&self, origin: &str, claim: &HubClaim, now_ms: u64) -> Result<Vec<(Key, &Held, Scope)>, String> {
        let wanted = check_claim(claim)?;
        let mut overlapping: BTreeMap<Key, Scope> = BTreeMap::new();
        for scope in &wanted {
            self.index.for_each_overlap(scope, |key, held| {
                overlapping.entry(key).or_insert_with(|| held.clone());
            });
        }
        Ok(overlapping
            .into_iter()
            .filter_map(|(key, scope)| {
                let (held, _) = self.held.get(&key)?;
                let same_claim = key.0 == origin && key.1 == claim.id;
                let both_shared = held.claim.mode == Mode::Shared && claim.mode == Mode::Shared;
                let apart = same_claim || both_shared || nested(&held.claim.holder, &claim.holder);
                (!apart && held.expires_at_ms > now_ms).then_some((key, held, scope))
            })
            .collect())
    }

    /// Who is in the way of each grant of a batch, decided in order: the live claims it overlaps and the grants
    /// before it in the batch that were free (an empty list: it may be granted; an error: its scopes are
    /// invalid). A batch granted on these answers never holds two overlapping claims.
    pub fn conflicts_in_batch<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a str, &'a HubClaim, u64)>,
    ) -> Vec<Result<Vec<ConflictView>, String>> {
        let mut granted = Space::default();
        batch
            .into_iter()
            .map(|(origin, claim, now_ms)| {
                let mut conflicts = self.conflicts(origin, claim, now_ms)?;
                conflicts.extend(granted.conflicts(origin, claim, now_ms)?);
                if conflicts.is_empty() {
                    let expires_at_ms = now_ms + claim.ttl_secs * 1000;
                    granted.insert(Held {
                        origin: origin.to_owned(),
                        claim: claim.clone(),
                        epoch: 0,
                        expires_at_ms,
                        lease: 0,
                    });
                }
                Ok(conflicts)
            })
            .collect()
    }

    /// Records a claim (replacing an earlier version of it).
    pub fn insert(&mut self, held: Held) {
        let key = (held.origin.clone(), held.claim.id);
        self.remove(&key.0, key.1);
        let scopes = parse_scopes(&held.claim).unwrap_or_default();
        for scope in &scopes {
            self.index.insert(key.clone(), scope);
        }
        self.held.insert(key, (held, scopes));
    }

    /// Forgets a claim.
    pub fn remove(&mut self, origin: &str, id: u64) -> Option<Held> {
        let key = (origin.to_owned(), id);
        let (held, scopes) = self.held.remove(&key)?;
        for scope in &scopes {
            self.index.remove(key.clone(), scope);
        }
        Some(held)
    }

    /// One claim.
    pub fn get(&self, origin: &str, id: u64) -> Option<&Held> {
        self.held.get(&(origin.to_owned(), id)).map(|(held, _)| held)
    }

    /// Those of `ids` that one sidecar holds, looked up one by one: what a release needs, at the cost of
    /// the ids it names.
    pub fn among(&self, origin: &str, ids: &[u64]) -> Vec<Held> {
        ids.iter().filter_map(|&id| self.get(origin, id)).cloned().collect()
    }

    /// The claims of one sidecar: a range of the map (claims are named by sidecar first), so a release or a
    /// sync costs that sidecar's claims, not the project's.
    pub fn of_origin(&self, origin: &str) -> Vec<Held> {
        let range = (origin.to_owned(), 0)..=(origin.to_owned(), u64::MAX);
        self.held.range(range).map(|(_, (h, _))| h.clone()).collect()
    }

    /// Live claims, for `hub.claims`.
    pub fn live(&self, now_ms: u64) -> Vec<HubClaimView> {
        self.held.values().filter(|(h, _)| h.expires_at_ms > now_ms).map(|(h, _)| h.view(now_ms)).collect()
    }

    /// At most `limit` live claims, those named in `first` before the others (in name order), with how many
    /// are live in all and per session. Copies only what it returns, so it stays cheap with 100,000 claims.
    pub fn some_live(&self, now_ms: u64, first: &BTreeSet<(String, u64)>, limit: usize) -> SomeClaims {
        let live = |held: &&Held| held.expires_at_ms > now_ms;
        let named = first.iter().filter_map(|key| self.held.get(key)).map(|(held, _)| held).filter(live);
        let others = self.held.iter().filter(|(key, _)| !first.contains(*key)).map(|(_, (held, _))| held).filter(live);
        let shown = named.chain(others).take(limit).map(|held| held.view(now_ms)).collect();
        let mut per_session: HashMap<(&str, &str), usize> = HashMap::new();
        for held in self.held.values().map(|(held, _)| held).filter(live) {
            *per_session.entry((held.origin.as_str(), session_of(&held.claim.holder))).or_default() += 1;
        }
        SomeClaims {
            total: per_session.values().sum(),
            shown,
            per_session: per_session.into_iter().map(|((o, s), n)| ((o.to_owned(), s.to_owned()), n)).collect(),
        }
    }

    /// The claims whose lease ran out, by name.
    pub fn expired(&self, now_ms: u64) -> Vec<(String, u64)> {
        self.held.iter().filter(|(_, (h, _))| h.expires_at_ms <= now_ms).map(|(k, _)| k.clone()).collect()
    }

    /// Removes and returns the claims whose lease ran out.
    pub fn sweep(&mut self, now_ms: u64) -> Vec<Held> {
        self.expired(now_ms).into_iter().filter_map(|(origin, id)| self.remove(&origin, id)).collect()
    }
}

/// What a `hub.sync` asks of a store, worked out from the sidecar's list and the hub's view of that sidecar.
#[derive(Debug, Default, PartialEq)]
pub struct SyncPlan {
    /// Claims the hub holds as listed, with enough lease left: nothing to write.
    pub current: Vec<u64>,
    /// Claims the hub holds: renew them (and take a new holder after a handoff).
    pub renew: Vec<(HubClaim, Held)>,
    /// Claims the hub does not hold: grant them if nothing is in the way.
    pub acquire: Vec<HubClaim>,
    /// Claims the sidecar no longer lists: release them.
    pub release: Vec<Held>,
}

/// Plans a sync. Hub claims above `upto` were granted after the sidecar took its list, so they are kept.
/// A claim the hub holds as listed, with its lease within a tenth of the sidecar's, needs no write.
pub fn plan_sync(known: Vec<Held>, upto: u64, listed: Vec<HubClaim>, now_ms: u64) -> SyncPlan {
    let mut known: BTreeMap<u64, Held> = known.into_iter().map(|h| (h.claim.id, h)).collect();
    let mut plan = SyncPlan::default();
    for claim in listed {
        match known.remove(&claim.id) {
            Some(held) => {
                let wanted_until = now_ms + claim.ttl_secs * 1000;
                let slack = (claim.ttl_secs * 100).max(2000);
                let same = held.claim.holder == claim.holder
                    && held.claim.scopes == claim.scopes
                    && held.claim.mode == claim.mode;
                if same && held.expires_at_ms + slack >= wanted_until {
                    plan.current.push(claim.id);
                } else {
                    plan.renew.push((claim, held));
                }
            }
            None => plan.acquire.push(claim),
        }
    }
    plan.release = known.into_values().filter(|h| h.claim.id <= upto).collect();
    plan
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: u64, holder: &str, scope: &str, mode: Mode) -> HubClaim {
        HubClaim { id, holder: holder.to_owned(), scopes: vec![scope.to_owned()], mode, ttl_secs: 60 }
    }

    fn held(origin: &str, claim: HubClaim, expires_at_ms: u64) -> Held {
        Held { origin: origin.to_owned(), claim, epoch: 1, expires_at_ms, lease: 0 }
    }

    #[test]
    fn overlapping_claims_of_other_holders_conflict_until_they_expire() {
        let mut space = Space::default();
        space.insert(held("m1", claim(1, "a", "src/", Mode::Exclusive), 10_000));
        let wanted = claim(7, "b", "src/lib.rs", Mode::Exclusive);
        let conflicts = space.conflicts("m2", &wanted, 5_000).expect("valid scopes");
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].session.as_deref(), Some("a"));
        assert_eq!(conflicts[0].worktree, "m1 (through the hub)");
        assert!(space.conflicts("m2", &wanted, 10_000).expect("valid").is_empty(), "expired at the instant");
        assert!(space.conflicts("m2", &claim(7, "b", "docs/", Mode::Exclusive), 5_000).expect("valid").is_empty());
        assert!(space.conflicts("m2", &claim(7, "a", "src/", Mode::Exclusive), 5_000).expect("valid").is_empty());
    }

    /// The index follows every change: a claim stated again with other scopes, removed, swept, and a glob
    /// held beside many paths.
    #[test]
    fn the_overlap_index_follows_replacements_removals_and_sweeps() {
        let mut space = Space::default();
        for i in 0..1000 {
            space.insert(held("m1", claim(i, &format!("s{i}"), &format!("src/f{i}.rs"), Mode::Exclusive), 10_000));
        }
        space.insert(held("m2", claim(1, "g", "docs/**/*.md", Mode::Exclusive), 10_000));
        let wants = |space: &Space, scope: &str| {
            let mut holders: Vec<String> = space
                .conflicts("m9", &claim(1, "me", scope, Mode::Exclusive), 0)
                .expect("valid")
                .into_iter()
                .filter_map(|c| c.session)
                .collect();
            holders.sort();
            holders
        };
        assert_eq!(wants(&space, "src/f7.rs"), ["s7"]);
        assert_eq!(wants(&space, "docs/a/b.md"), ["g"]);
        assert_eq!(wants(&space, "src/").len(), 1000, "a directory meets every path below it, each once");
        space.insert(held("m1", claim(7, "s7", "lib/", Mode::Exclusive), 10_000));
        assert!(wants(&space, "src/f7.rs").is_empty(), "the old scope of a claim stated again is gone");
        assert_eq!(wants(&space, "lib/x.rs"), ["s7"]);
        space.remove("m2", 1);
        assert!(wants(&space, "docs/a/b.md").is_empty());
        space.insert(held("m3", claim(1, "late", "src/f8.rs", Mode::Exclusive), 5_000));
        assert_eq!(space.sweep(6_000).len(), 1);
        assert_eq!(wants(&space, "src/f8.rs"), ["s8"], "a swept claim leaves the index");
    }

    #[test]
    fn a_batch_is_decided_in_order_against_the_claims_and_itself() {
        let mut space = Space::default();
        space.insert(held("m1", claim(1, "a", "docs/", Mode::Exclusive), 10_000));
        let (first, second, third) = (
            claim(1, "b", "src/", Mode::Exclusive),
            claim(1, "c", "src/lib.rs", Mode::Exclusive),
            claim(2, "c", "docs/a.md", Mode::Exclusive),
        );
        let bad = HubClaim { scopes: vec!["../x".to_owned()], ..claim(3, "c", "x", Mode::Exclusive) };
        let batch = [("m2", &first, 0), ("m3", &second, 0), ("m3", &third, 0), ("m3", &bad, 0)];
        let verdicts = space.conflicts_in_batch(batch);
        assert!(verdicts[0].as_ref().expect("valid").is_empty(), "the first is free");
        let holders = |v: &Result<Vec<ConflictView>, String>| {
            v.as_ref().expect("valid").iter().filter_map(|c| c.session.clone()).collect::<Vec<_>>()
        };
        assert_eq!(holders(&verdicts[1]), ["b"], "the second meets the first of its batch");
        assert_eq!(holders(&verdicts[2]), ["a"], "the third meets a live claim");
        assert!(verdicts[3].is_err(), "a scope leaving the repository is invalid");
    }

    /// A sidecar's claims are a range of the map: whole ids at both ends, and none of a sidecar whose name
    /// starts with this one's; a release's lookup finds only the ids that sidecar holds.
    #[test]
    fn the_claims_of_one_sidecar_are_its_own() {
        let mut space = Space::default();
        for (origin, id) in [("m1", 0), ("m1", u64::MAX), ("m1", 5), ("m10", 1), ("m", 2), ("m0", 3)] {
            space.insert(held(origin, claim(id, "a", &format!("{origin}/{id}"), Mode::Exclusive), 10_000));
        }
        let ids: Vec<u64> = space.of_origin("m1").iter().map(|h| h.claim.id).collect();
        assert_eq!(ids, vec![0, 5, u64::MAX]);
        assert_eq!(space.of_origin("m10").len(), 1);
        assert!(space.of_origin("m2").is_empty());
        let among: Vec<u64> = space.among("m1", &[5, 1, u64::MAX]).iter().map(|h| h.claim.id).collect();
        assert_eq!(among, vec![5, u64::MAX], "only the ids it holds");
    }

    #[test]
    fn shared_claims_only_conflict_with_exclusive_ones() {
        let mut space = Space::default();
        space.insert(held("m1", claim(1, "a", "src/", Mode::Shared), 10_000));
        assert!(space.conflicts("m2", &claim(2, "b", "src/", Mode::Shared), 0).expect("valid").is_empty());
        assert_eq!(space.conflicts("m2", &claim(2, "b", "src/", Mode::Exclusive), 0).expect("valid").len(), 1);
    }

    #[test]
    fn scopes_outside_the_repository_are_refused() {
        let space = Space::default();
        assert!(space.conflicts("m", &claim(1, "a", "../etc/passwd", Mode::Exclusive), 0).is_err());
        let empty = HubClaim { scopes: Vec::new(), ..claim(1, "a", "x", Mode::Exclusive) };
        assert!(space.conflicts("m", &empty, 0).is_err());
    }

    #[test]
    fn sync_keeps_claims_granted_after_the_list_was_taken() {
        let known = vec![
            held("m", claim(1, "a", "x", Mode::Exclusive), 1),
            held("m", claim(2, "a", "y", Mode::Exclusive), 1),
            held("m", claim(9, "a", "z", Mode::Exclusive), 1),
        ];
        let listed = vec![claim(2, "b", "y", Mode::Exclusive), claim(3, "a", "w", Mode::Exclusive)];
        let plan = plan_sync(known, 5, listed, 0);
        assert_eq!(plan.renew.len(), 1);
        assert_eq!(plan.renew[0].0.holder, "b");
        assert_eq!(plan.acquire.iter().map(|c| c.id).collect::<Vec<_>>(), vec![3]);
        assert_eq!(plan.release.iter().map(|h| h.claim.id).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn sync_writes_only_what_changed_or_runs_down() {
        let known = vec![held("m", claim(1, "a", "x", Mode::Exclusive), 60_000)];
        let plan = plan_sync(known.clone(), 1, vec![claim(1, "a", "x", Mode::Exclusive)], 1_000);
        assert_eq!((plan.current, plan.renew.len()), (vec![1], 0));
        let plan = plan_sync(known, 1, vec![claim(1, "a", "x", Mode::Exclusive)], 30_000);
        assert_eq!(plan.renew.len(), 1, "a lease running down is renewed");
    }

    #[test]
    fn some_live_lists_the_named_first_within_the_limit_and_counts_every_live_claim() {
        let mut space = Space::default();
        for id in 1..=5 {
            space.insert(held("m1", claim(id, "a/sub", &format!("f{id}"), Mode::Exclusive), 10_000));
        }
        space.insert(held("m2", claim(1, "b", "g", Mode::Exclusive), 10_000));
        space.insert(held("m2", claim(2, "b", "gone", Mode::Exclusive), 500));
        let first = BTreeSet::from([("m2".to_owned(), 1), ("m9".to_owned(), 7)]);
        let some = space.some_live(1_000, &first, 3);
        let shown: Vec<(&str, u64)> = some.shown.iter().map(|c| (c.origin.as_str(), c.claim.id)).collect();
        assert_eq!(shown, [("m2", 1), ("m1", 1), ("m1", 2)], "the named first, then in name order");
        assert_eq!(some.total, 6, "the expired claim is not counted");
        assert_eq!(some.per_session[&("m1".to_owned(), "a".to_owned())], 5, "an agent's claims count for its session");
        assert_eq!(some.per_session[&("m2".to_owned(), "b".to_owned())], 1);
        assert_eq!(space.some_live(1_000, &BTreeSet::new(), 0).shown.len(), 0);
    }
}
