//! Waits: a principal records that it waits for a claim. A wait that would close a cycle of sessions waiting
//! on each other is refused as `would_deadlock`; the holder is told someone waits, and the waiter is told when
//! the claim ends. Waits are advisory and kept in memory: a restarted sidecar starts with none.

use crate::book::{ClaimBook, ClaimId, Conflict, Principal, Refusal, RefusalCode, SessionState};
use crate::messages::SYSTEM_SENDER;
use crate::time::Timestamp;

/// One recorded wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Who waits.
    pub waiter: Principal,
    /// For which claim.
    pub claim: ClaimId,
    /// Whose claim it is (a session).
    pub holder: String,
}

impl ClaimBook {
    /// Records that `waiter` waits for the given claims (the ones in its way). Refused when the waiter's
    /// session would end up waiting, through a chain of waits, for itself.
    pub fn wait_for(
        &mut self,
        waiter: &Principal,
        conflicts: &[Conflict],
        now: Timestamp,
    ) -> Result<Vec<Wait>, Refusal> {
        if conflicts.is_empty() {
            return Err(Refusal::new(RefusalCode::NotFound, "nothing to wait for: nobody else holds it"));
        }
        for conflict in conflicts {
            if self.waits_on(&conflict.holder.session, &waiter.session) {
                return Err(Refusal::new(
                    RefusalCode::WouldDeadlock,
                    format!(
                        "waiting for {} would deadlock: {} already waits (directly or through others) for {}; release something or talk with `lanes send`",
                        conflict.holder, conflict.holder.session, waiter.session
                    ),
                ));
            }
        }
        let mut added = Vec::new();
        for conflict in conflicts {
            let wait =
                Wait { waiter: waiter.clone(), claim: conflict.claim_id, holder: conflict.holder.session.clone() };
            if self.waits.contains(&wait) {
                continue;
            }
            self.waits.push(wait.clone());
            if self.session_state(&wait.holder) == Some(SessionState::Live) {
                let text = format!(
                    "{} waits for your claim {} on {}; release it when you can",
                    waiter, conflict.claim_id, conflict.scope
                );
                self.queue_message(SYSTEM_SENDER, &wait.holder, text, now);
            }
            added.push(wait);
        }
        Ok(added)
    }

    /// Whether session `from` waits, directly or through a chain of waits, for session `to`.
    fn waits_on(&self, from: &str, to: &str) -> bool {
        let mut pending = vec![from.to_owned()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(session) = pending.pop() {
            if session == to {
                return true;
            }
            if seen.insert(session.clone()) {
                pending.extend(self.waits.iter().filter(|w| w.waiter.session == session).map(|w| w.holder.clone()));
            }
        }
        false
    }

    /// Clears the waits on a claim that ended, telling each waiter it is free.
    pub(crate) fn clear_waits_on(&mut self, claim: ClaimId, now: Timestamp) {
        let (done, kept): (Vec<Wait>, Vec<Wait>) =
            std::mem::take(&mut self.waits).into_iter().partition(|w| w.claim == claim);
        self.waits = kept;
        for wait in done {
            if self.session_state(&wait.waiter.session) == Some(SessionState::Live) {
                let text = format!("claim {claim} you waited for has ended; claim what you need now");
                self.queue_message(SYSTEM_SENDER, &wait.waiter.session, text, now);
            }
        }
    }

    /// Every recorded wait.
    pub fn waits(&self) -> &[Wait] {
        &self.waits
    }
}
