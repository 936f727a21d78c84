//! Pending work (DESIGN.md §5, "Lifetime" and "Latent work"): a claim follows the work it protects until
//! that work lands on the base branch. The caller (the sidecar, which runs git) tells the book each
//! worktree's *pending paths* — changed there and not yet on the base — with
//! [`ClaimBook::set_worktree_work`]; the book never waits on git.
//!
//! When a claim's holder ends or its lease runs out, the pending paths it covers stay claimed as pending
//! work, held by the worktree (the claim keeps its holder, who left it); the rest is released. Pending work
//! conflicts with every principal working in another worktree, is taken over by a principal editing in its
//! own worktree, and ends by itself when its paths are no longer pending there. Paths pending in a worktree
//! that no claim covers are *latent* work: they conflict too, as [`crate::Latent`] says.

use std::collections::BTreeSet;

use crate::book::{Claim, ClaimBook, ClaimId, Conflict, Event, Principal, ReleaseReason, Worktree};
use crate::scope::Scope;
use crate::time::Timestamp;

/// What a claim that became pending work records of the work it protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// When its holder ended or its lease ran out.
    pub left_at: Timestamp,
    /// The branch of its worktree then, if one was checked out.
    pub branch: Option<String>,
}

/// A worktree's pending paths, as the sidecar last read them from git.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorktreeWork {
    /// The branch checked out there (none when detached).
    pub branch: Option<String>,
    /// Repo-relative paths changed there and not on the base branch: uncommitted (modified, added, deleted,
    /// untracked and not ignored) and committed on the branch since it forked from the base.
    pub paths: BTreeSet<String>,
}

/// When pending work expires: never by time, only when it lands, is reverted, or its worktree goes.
pub const PENDING_EXPIRY: Timestamp = Timestamp(253_402_300_799_000); // 9999-12-31T23:59:59Z

/// What latent work (paths pending in another worktree that no claim covers) does to a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Latent {
    /// It conflicts, like a claim.
    #[default]
    Refuse,
    /// The claim is granted with a warning naming the worktree.
    Warn,
    /// It is ignored.
    Off,
}

/// The scope a pending path string stands for.
fn path_scope(path: &str) -> Option<Scope> {
    match Scope::parse(path) {
        Ok(scope @ Scope::Path(_)) => Some(scope),
        _ => None,
    }
}

impl ClaimBook {
    /// Records a worktree's pending paths (read from git by the caller) and ends the pending work there that
    /// is no longer pending: landed on the base, or reverted. Returns the claims that ended.
    pub fn set_worktree_work(&mut self, root: &str, work: WorktreeWork, now: Timestamp) -> Vec<ClaimId> {
        let pending: Vec<ClaimId> =
            self.claims().filter(|c| c.pending.is_some() && c.worktree.root == root).map(|c| c.id).collect();
        self.work.insert(root.to_owned(), work);
        let mut ended = Vec::new();
        for id in pending {
            let Some(claim) = self.claim(id).cloned() else { continue };
            let still = self.pending_paths_of(&claim);
            if still.is_empty() {
                self.remove(id, ReleaseReason::Landed, now);
                ended.push(id);
            } else if still.len() < claim.scopes.len() {
                self.rewrite_pending(claim, still, now);
            }
        }
        ended
    }

    /// Forgets a worktree's pending paths (it was removed).
    pub fn forget_worktree_work(&mut self, root: &str) {
        self.work.remove(root);
    }

    /// The pending paths the sidecar last read for a worktree.
    pub fn worktree_work(&self, root: &str) -> Option<&WorktreeWork> {
        self.work.get(root)
    }

    /// Every worktree whose pending paths are known.
    pub fn worktrees_with_work(&self) -> impl Iterator<Item = (&str, &WorktreeWork)> {
        self.work.iter().map(|(root, work)| (root.as_str(), work))
    }

    /// The pending paths of `claim`'s worktree that it covers, as path scopes.
    fn pending_paths_of(&self, claim: &Claim) -> Vec<Scope> {
        let Some(work) = self.work.get(&claim.worktree.root) else { return Vec::new() };
        work.paths
            .iter()
            .filter_map(|p| path_scope(p))
            .filter(|p| {
                let Scope::Path(components) = p else { return false };
                claim.scopes.iter().any(|s| s.covers(components))
            })
            .collect()
    }

    /// What happens to a claim whose holder ended or whose lease ran out: its pending paths stay claimed as
    /// pending work; without any, it is gone (`false`, and the caller releases or expires it).
    pub(crate) fn leave_pending(&mut self, id: ClaimId, now: Timestamp) -> bool {
        let Some(claim) = self.claim(id).cloned() else { return false };
        if claim.pending.is_some() {
            return true;
        }
        let paths = self.pending_paths_of(&claim);
        if paths.is_empty() {
            return false;
        }
        let branch = self.work.get(&claim.worktree.root).and_then(|w| w.branch.clone());
        let left = Claim { pending: Some(Pending { left_at: now, branch }), ..claim };
        self.rewrite_pending(left, paths, now);
        true
    }

    /// Replaces a claim by its pending form over `paths`.
    fn rewrite_pending(&mut self, claim: Claim, paths: Vec<Scope>, now: Timestamp) {
        let Some(old) = self.take(claim.id) else { return };
        let claim = Claim { scopes: paths, expires_at: PENDING_EXPIRY, note: old.note.clone(), ..claim };
        self.insert(claim.clone());
        self.journal.push(Event::Pending { claim, at: now });
    }

    /// Gives the pending work in `worktree` that overlaps `scopes` to `who`, who edits there now: it is the
    /// same work on the same files. Returns the claims taken over, each as it was (to tell `who` whose work
    /// it continues).
    pub(crate) fn take_over_pending(
        &mut self,
        who: &Principal,
        worktree: &Worktree,
        scopes: &[Scope],
        ttl: std::time::Duration,
        now: Timestamp,
    ) -> Vec<Claim> {
        let mut ids = Vec::new();
        for scope in scopes {
            self.index.for_each_overlap(scope, |id, _| ids.push(id));
        }
        ids.sort_unstable();
        ids.dedup();
        let mut taken = Vec::new();
        for id in ids {
            let Some(claim) = self.claim(id) else { continue };
            if claim.pending.is_none() || claim.worktree.root != worktree.root {
                continue;
            }
            let before = claim.clone();
            let Some(old) = self.take(id) else { continue };
            let epoch = self.bump_epoch();
            let live = Claim { holder: who.clone(), pending: None, epoch, ttl, expires_at: now.after(ttl), ..old };
            self.insert(live.clone());
            self.journal.push(Event::TakenOver { claim: live, from: before.holder.clone(), at: now });
            taken.push(before);
        }
        taken
    }

    /// Gives up pending work (`lanes release --pending`): the claims named, or every pending claim `who`
    /// (or its subagents) left when `ids` is empty. Anyone may give up pending work by id: it is a person's
    /// call that the work will not land.
    pub fn release_pending(&mut self, who: &Principal, ids: &[ClaimId], now: Timestamp) -> Vec<ClaimId> {
        let chosen: Vec<ClaimId> = if ids.is_empty() {
            self.claims().filter(|c| c.pending.is_some() && c.holder.session == who.session).map(|c| c.id).collect()
        } else {
            ids.iter().copied().filter(|id| self.claim(*id).is_some_and(|c| c.pending.is_some())).collect()
        };
        for id in &chosen {
            self.remove(*id, ReleaseReason::Released, now);
        }
        chosen
    }

    /// Latent work in the way of `scopes` from `worktree`: paths pending in other worktrees that no claim
    /// made there covers.
    /// With `contention = "worktree"` there is none: latent work conflicts only inside its own worktree.
    pub(crate) fn latent_conflicts(&self, worktree: &Worktree, scopes: &[Scope], now: Timestamp) -> Vec<Conflict> {
        let mut found = Vec::new();
        if self.policy.contention != crate::book::Contention::Repo {
            return found;
        }
        for (root, work) in &self.work {
            if *root == worktree.root {
                continue;
            }
            for path in &work.paths {
                let Some(scope) = path_scope(path) else { continue };
                if !scopes.iter().any(|s| s.overlaps(&scope)) {
                    continue;
                }
                let Scope::Path(components) = &scope else { continue };
                let mut claimed = false;
                self.index.for_each_overlap(&scope, |id, _| {
                    claimed |= self.claims.get(&id).is_some_and(|c| {
                        c.worktree.root == *root && c.expires_at > now && c.scopes.iter().any(|s| s.covers(components))
                    });
                });
                if !claimed {
                    found.push(Conflict {
                        claim_id: ClaimId(0),
                        holder: Principal { session: String::new(), agent: None },
                        scope,
                        worktree: Worktree { root: root.clone(), git_dir: String::new() },
                        expires_at: PENDING_EXPIRY,
                        pending: Some(Pending { left_at: now, branch: work.branch.clone() }),
                        latent: true,
                        client: None,
                    });
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::book::{AcquireRequest, Ensured, Mode, Policy};

    fn tree(root: &str) -> Worktree {
        Worktree { root: root.to_owned(), git_dir: format!("{root}/.git") }
    }

    fn request(who: &str, root: &str, scope: &str) -> AcquireRequest {
        AcquireRequest {
            holder: Principal::parse(who).expect("principal"),
            worktree: tree(root),
            scopes: vec![Scope::parse(scope).expect("scope")],
            mode: Mode::Exclusive,
            ttl: Some(Duration::from_secs(60)),
            note: None,
            task: None,
        }
    }

    fn work(branch: &str, paths: &[&str]) -> WorktreeWork {
        WorktreeWork { branch: Some(branch.to_owned()), paths: paths.iter().map(|p| (*p).to_owned()).collect() }
    }

    #[test]
    fn an_ended_session_leaves_its_uncommitted_paths_claimed_until_they_land() {
        let mut book = ClaimBook::new(Policy::default());
        let t0 = Timestamp(1_000_000);
        book.acquire(request("a", "/wt1", "src"), t0).expect("grant");
        book.set_worktree_work("/wt1", work("feat", &["src/shared.rs"]), t0);
        let released = book.end_session("a", t0);
        assert!(released.is_empty(), "the claim with pending work was released");
        let left: Vec<&Claim> = book.claims().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].scopes, vec![Scope::parse("src/shared.rs").expect("scope")], "narrowed to the work");
        assert_eq!(left[0].pending.as_ref().and_then(|p| p.branch.as_deref()), Some("feat"));

        // Another worktree is refused, even long after the lease would have run out.
        let later = t0.after(Duration::from_secs(7200));
        let refused = book.acquire(request("b", "/wt2", "src/shared.rs"), later).expect_err("refused");
        assert!(refused.conflicts[0].pending.is_some(), "{refused:?}");
        book.acquire(request("b", "/wt2", "src/other.rs"), later).expect("the rest of src is free");

        // The work lands: the path is free.
        book.set_worktree_work("/wt1", work("feat", &[]), later);
        assert!(book.claims().all(|c| c.pending.is_none()));
        book.acquire(request("c", "/wt2", "src/shared.rs"), later).expect("free once landed");
    }

    #[test]
    fn a_principal_editing_in_the_same_worktree_takes_the_work_over() {
        let mut book = ClaimBook::new(Policy::default());
        let t0 = Timestamp(1_000_000);
        book.acquire(request("a", "/wt1", "src/a.rs"), t0).expect("grant");
        book.set_worktree_work("/wt1", work("feat", &["src/a.rs"]), t0);
        book.end_session("a", t0);
        let Ensured::Granted(grant) = book.ensure(request("b", "/wt1", "src/a.rs"), t0).expect("ensure") else {
            panic!("a takeover is reported as a grant naming whose work it continues")
        };
        assert_eq!(grant.continues[0].holder.session, "a");
        assert_eq!(grant.claim.holder.session, "b");
        assert!(grant.claim.pending.is_none());
    }

    #[test]
    fn an_expired_lease_on_pending_work_leaves_it_claimed() {
        let mut book = ClaimBook::new(Policy::default());
        let t0 = Timestamp(1_000_000);
        book.acquire(request("a", "/wt1", "src/a.rs"), t0).expect("grant");
        book.set_worktree_work("/wt1", work("feat", &["src/a.rs"]), t0);
        let later = t0.after(Duration::from_secs(120));
        book.expire_due(later);
        assert!(book.claims().any(|c| c.pending.is_some()));
        assert!(book.acquire(request("b", "/wt2", "src/a.rs"), later).is_err());
    }

    #[test]
    fn latent_work_in_another_worktree_conflicts_unless_turned_off() {
        let mut book = ClaimBook::new(Policy::default());
        let t0 = Timestamp(1_000_000);
        book.set_worktree_work("/wt2", work("person", &["docs/guide.md"]), t0);
        let refused = book.acquire(request("a", "/wt1", "docs"), t0).expect_err("latent work is in the way");
        assert!(refused.conflicts[0].latent);
        assert_eq!(refused.conflicts[0].worktree.root, "/wt2");
        book.acquire(request("a", "/wt2", "docs/guide.md"), t0).expect("its own worktree may claim it");
        book.set_worktree_work("/wt5", work("person", &["notes.md"]), t0);
        book.set_policy(Policy { latent: Latent::Warn, ..Policy::default() });
        let warned = book.acquire(request("b", "/wt3", "notes.md"), t0).expect("warn grants");
        assert_eq!(warned.latent.len(), 1, "warn mode names the latent work");
        book.set_policy(Policy { latent: Latent::Off, ..Policy::default() });
        book.set_worktree_work("/wt6", work("person", &["todo.md"]), t0);
        let quiet = book.acquire(request("c", "/wt4", "todo.md"), t0).expect("off");
        assert!(quiet.latent.is_empty());
    }
}
