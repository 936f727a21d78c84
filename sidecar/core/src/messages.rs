//! Messages between sessions: queued in the book, delivered into the recipient's next hook context exactly
//! once, and kept across restarts by the store like every other change.

use crate::book::{ClaimBook, Event, Refusal, RefusalCode, SessionState};
use crate::time::Timestamp;

/// The longest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// The sender lanes itself uses, e.g. to tell a holder its claim expired.
pub const SYSTEM_SENDER: &str = "lanes";

/// A message to one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its id, unique and increasing.
    pub id: u64,
    /// The sending session (or `lanes`).
    pub from: String,
    /// The receiving session.
    pub to: String,
    /// The text.
    pub text: String,
    /// When it was sent.
    pub sent_at: Timestamp,
}

/// Who a message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// One session.
    Session(String),
    /// Every live session but the sender.
    All,
}

impl Recipient {
    /// Parses `@all` or a session id.
    pub fn parse(text: &str) -> Recipient {
        if text == "@all" { Recipient::All } else { Recipient::Session(text.to_owned()) }
    }
}

impl ClaimBook {
    /// Queues a message; returns one copy per recipient.
    pub fn send_message(
        &mut self,
        from: &str,
        to: &Recipient,
        text: &str,
        now: Timestamp,
    ) -> Result<Vec<Message>, Refusal> {
        if text.trim().is_empty() {
            return Err(Refusal::new(RefusalCode::InvalidArgument, "empty message: say something"));
        }
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(Refusal::new(
                RefusalCode::InvalidArgument,
                format!(
                    "message too long ({} bytes): keep it under {MAX_MESSAGE_BYTES} bytes, or point to a file",
                    text.len()
                ),
            ));
        }
        let recipients: Vec<String> = match to {
            Recipient::Session(session) => match self.session_state(session) {
                Some(SessionState::Live) => vec![session.clone()],
                Some(SessionState::Ended) => {
                    return Err(Refusal::new(
                        RefusalCode::NotFound,
                        format!("session {session} has ended; nobody would read it"),
                    ));
                }
                None => {
                    return Err(Refusal::new(
                        RefusalCode::NotFound,
                        format!("no session {session} is known here; `lanes status` lists the live sessions"),
                    ));
                }
            },
            Recipient::All => {
                let mut live: Vec<String> =
                    self.sessions().filter(|(id, s)| s.live && *id != from).map(|(id, _)| id.to_owned()).collect();
                live.sort();
                live
            }
        };
        self.register_session(from, now);
        let text = crate::redact::redact(text);
        Ok(recipients.iter().map(|to| self.queue_message(from, to, text.clone(), now)).collect())
    }

    /// Queues a message that came from another machine (through the hub) for `to`, if `to` is live here;
    /// the text is checked and redacted again, whoever sent it.
    pub fn receive_message(&mut self, from: &str, to: &str, text: &str, now: Timestamp) -> Option<Message> {
        let live = matches!(self.session_state(to), Some(SessionState::Live));
        if !live || text.len() > MAX_MESSAGE_BYTES || from.is_empty() {
            return None;
        }
        Some(self.queue_message(from, to, crate::redact::redact(text), now))
    }

    /// Tells each live holder in `conflicts` that a shell command of `editor` in `root` changed `path`, which
    /// it holds (DESIGN.md §5, "Shell edits"). The text is lanes' own, so it is not redacted: a session id or a
    /// path that looks random to the redactor is exactly what the holder needs to read.
    pub fn report_shell_edit(
        &mut self,
        editor: &crate::Principal,
        root: &str,
        path: &str,
        conflicts: &[crate::Conflict],
        now: Timestamp,
    ) -> Vec<Message> {
        let mut told = Vec::new();
        for conflict in conflicts.iter().filter(|c| !c.latent) {
            let holder = &conflict.holder.session;
            if !matches!(self.session_state(holder), Some(SessionState::Live)) {
                continue;
            }
            let text = format!(
                "lanes: a shell command of {editor} in {root} changed {path}, which you hold (claim {}); ask them \
                 to undo it (`git checkout -- {path}`) or agree on who keeps it",
                conflict.claim_id
            );
            told.push(self.queue_message(SYSTEM_SENDER, holder, text, now));
        }
        told
    }

    /// Messages waiting for `session`, marked delivered: each is handed out once.
    pub fn take_inbox(&mut self, session: &str, now: Timestamp) -> Vec<Message> {
        let messages = self.inboxes.remove(session).unwrap_or_default();
        if !messages.is_empty() {
            let ids = messages.iter().map(|m| m.id).collect();
            self.journal.push(Event::MessagesDelivered { session: session.to_owned(), ids, at: now });
        }
        messages
    }

    /// How many messages wait for `session`.
    pub fn unread(&self, session: &str) -> usize {
        self.inboxes.get(session).map_or(0, Vec::len)
    }

    pub(crate) fn queue_message(&mut self, from: &str, to: &str, text: String, now: Timestamp) -> Message {
        let message =
            Message { id: self.next_message_id, from: from.to_owned(), to: to.to_owned(), text, sent_at: now };
        self.next_message_id += 1;
        self.inboxes.entry(to.to_owned()).or_default().push(message.clone());
        self.journal.push(Event::MessageSent { message: message.clone() });
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{Policy, SessionInfo};

    #[test]
    fn messages_are_delivered_once_and_checked() {
        let mut book = ClaimBook::new(Policy::default());
        let now = Timestamp(1);
        for s in ["a", "b", "c"] {
            book.start_session(s, SessionInfo::default(), now);
        }
        book.end_session("c", now);
        assert_eq!(book.send_message("a", &Recipient::All, "hello", now).expect("sent").len(), 1);
        book.send_message("a", &Recipient::Session("b".into()), "direct", now).expect("sent");
        assert_eq!(book.unread("b"), 2);
        let texts: Vec<String> = book.take_inbox("b", now).into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["hello", "direct"]);
        assert!(book.take_inbox("b", now).is_empty());
        assert_eq!(
            book.send_message("a", &Recipient::Session("c".into()), "x", now).map(|_| ()).expect_err("refused").code,
            RefusalCode::NotFound
        );
        assert_eq!(
            book.send_message("a", &Recipient::Session("zz".into()), "x", now).map(|_| ()).expect_err("refused").code,
            RefusalCode::NotFound
        );
        let received = book.receive_message("remote", "b", "from afar ghp_0123456789abcdefghijklmnopqrstuvwxyz", now);
        assert!(received.expect("queued").text.contains(crate::MASK), "a received message is redacted too");
        assert!(book.receive_message("remote", "c", "x", now).is_none(), "ended sessions get no mail");
        assert!(book.receive_message("remote", "zz", "x", now).is_none(), "unknown sessions get no mail");
        assert_eq!(book.take_inbox("b", now)[0].from, "remote");
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(
            book.send_message("a", &Recipient::All, &long, now).map(|_| ()).expect_err("refused").code,
            RefusalCode::InvalidArgument
        );
    }

    #[test]
    fn a_shell_edit_report_names_the_editor_and_the_worktree_unredacted() {
        use crate::book::{AcquireRequest, Mode, Worktree};
        let mut book = ClaimBook::new(Policy::default());
        let now = Timestamp(1);
        // An opencode-style session id and a temp path: both look random enough for the redactor.
        let editor = crate::Principal::parse("ses_1a2B3c4D5e6F7g8H9i0JkLmNoP").expect("principal");
        let root = "/tmp/.tmpX9qZ3kVw7LmR2pTb/repo-opencode";
        book.start_session("holder", SessionInfo::default(), now);
        let request = |who: &crate::Principal, root: &str| AcquireRequest {
            holder: who.clone(),
            worktree: Worktree { root: root.to_owned(), git_dir: format!("{root}/.git") },
            scopes: vec![crate::Scope::parse("src/a.rs").expect("scope")],
            mode: Mode::Exclusive,
            ttl: None,
            note: None,
            task: None,
        };
        book.acquire(request(&crate::Principal::parse("holder").expect("principal"), "/wt/holder"), now)
            .expect("granted");
        let refused = book.acquire(request(&editor, root), now).expect_err("held");
        let told = book.report_shell_edit(&editor, root, "src/a.rs", &refused.conflicts, now);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].from, SYSTEM_SENDER);
        let text = &book.take_inbox("holder", now)[0].text;
        assert!(text.contains(&format!("a shell command of {editor} in {root} changed src/a.rs")), "{text}");
        assert!(!text.contains(crate::MASK), "{text}");
    }
}
