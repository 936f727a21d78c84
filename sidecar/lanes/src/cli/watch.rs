//! `lanes watch`: a live terminal view of the sidecar: sessions, claims with time left, the task board, the
//! landing queue and the event stream, refreshed twice a second from `status`, `land.list` and the event log.
//! `q` or Esc quits.

use std::collections::VecDeque;
use std::time::Duration;

use lanes_proto::{EventsParams, method};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, List, ListItem, Row, Table};
use serde_json::{Value, json};

use crate::cli::output::{joined, secs};
use crate::cli::{Env, Failure};

/// How many events the view keeps.
const EVENTS_SHOWN: usize = 200;

/// What one frame shows.
#[derive(Debug, Default)]
pub struct View {
    pub status: Value,
    /// The `land.list` reply.
    pub queue: Value,
    pub events: VecDeque<Value>,
    pub cursor: u64,
}

impl View {
    /// Takes a new status and the events after the cursor.
    pub fn update(&mut self, status: Value, events: &Value) {
        self.status = status;
        for event in events["events"].as_array().into_iter().flatten() {
            if self.events.len() == EVENTS_SHOWN {
                self.events.pop_front();
            }
            self.events.push_back(event.clone());
        }
        self.cursor = events["cursor"].as_u64().unwrap_or(self.cursor);
    }

    /// Reads the sidecar's status, the events after the cursor and the landing queue (`lanes watch` and
    /// `lanes web` show the same).
    pub fn refresh(&mut self, client: &mut lanes_proto::client::Client) -> Result<(), Failure> {
        let status = client.call_value(method::STATUS, &json!({}))?;
        let events = client.call_value(method::EVENTS, &EventsParams { since: self.cursor, limit: Some(500) })?;
        self.update(status, &events);
        self.queue = client.call_value(method::LAND_LIST, &json!({}))?;
        Ok(())
    }
}

pub fn run(env: &Env, json: bool) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if json || !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Failure::invalid(
            "lanes watch is a live view and needs a terminal; for scripts use `lanes status --json` or \
             `lanes events --follow`",
        ));
    }
    let mut client = env.connect()?;
    let mut view = View::default();
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), Failure> {
        loop {
            view.refresh(&mut client)?;
            terminal.draw(|frame| render(frame, &view)).map_err(|e| Failure::internal(e.to_string()))?;
            if event::poll(Duration::from_millis(500)).map_err(|e| Failure::internal(e.to_string()))?
                && let Event::Key(key) = event::read().map_err(|e| Failure::internal(e.to_string()))?
                && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                    || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
            {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    result
}

/// Draws the view: sessions, claims, tasks and the latest events.
pub fn render(frame: &mut Frame<'_>, view: &View) {
    let status = &view.status;
    let [sessions_area, claims_area, tasks_area, queue_area, events_area] = Layout::vertical([
        Constraint::Percentage(18),
        Constraint::Percentage(25),
        Constraint::Percentage(17),
        Constraint::Percentage(15),
        Constraint::Percentage(25),
    ])
    .areas(frame.area());
    let title = |name: &str, count: usize| Block::default().borders(Borders::ALL).title(format!(" {name} ({count}) "));
    let header = |cells: &[&'static str]| Row::new(cells.to_vec()).style(Style::default().add_modifier(Modifier::BOLD));
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };

    let sessions: Vec<&Value> =
        status["sessions"].as_array().into_iter().flatten().filter(|s| s["state"] == "live").collect();
    let rows = sessions.iter().map(|s| {
        let client = s["client"].as_str().unwrap_or("-").to_owned();
        Row::new(vec![text(&s["id"]), client, s["claims"].to_string(), text(&s["branch"]), text(&s["worktree"])])
    });
    let widths = [
        Constraint::Percentage(28),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Percentage(20),
        Constraint::Percentage(40),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header(&["SESSION", "CLIENT", "CLAIMS", "BRANCH", "WORKTREE"]))
            .block(title("sessions", sessions.len())),
        sessions_area,
    );

    let claims = status["claims"].as_array().cloned().unwrap_or_default();
    let rows = claims.iter().map(|c| {
        Row::new(vec![
            c["id"].to_string(),
            text(&c["session"]),
            joined(&c["scopes"], " "),
            if c["pending"] == true { "pending".to_owned() } else { secs(&c["expires_in_secs"]) },
            text(&c["mode"]),
        ])
    });
    let widths = [
        Constraint::Length(6),
        Constraint::Percentage(30),
        Constraint::Percentage(40),
        Constraint::Length(8),
        Constraint::Length(10),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header(&["CLAIM", "HOLDER", "SCOPES", "LEFT", "MODE"]))
            .block(title("claims", claims.len())),
        claims_area,
    );

    let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
    let rows = tasks.iter().map(|t| {
        Row::new(vec![
            t["id"].to_string(),
            text(&t["status"]),
            text(&t["title"]),
            t["holder"].as_str().unwrap_or("-").to_owned(),
        ])
    });
    let widths = [Constraint::Length(5), Constraint::Length(8), Constraint::Percentage(60), Constraint::Percentage(30)];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header(&["TASK", "STATUS", "TITLE", "HOLDER"]))
            .block(title("tasks", tasks.len())),
        tasks_area,
    );

    let entries = view.queue["entries"].as_array().cloned().unwrap_or_default();
    let rows = entries.iter().map(|e| {
        Row::new(vec![
            e["id"].to_string(),
            crate::cli::land::state_label(e),
            format!("{} → {}", text(&e["branch"]), text(&e["onto"])),
            text(&e["owner"]),
            crate::cli::land::result_line(e),
        ])
    });
    let widths = [
        Constraint::Length(6),
        Constraint::Length(16),
        Constraint::Percentage(25),
        Constraint::Percentage(20),
        Constraint::Percentage(40),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header(&["ENTRY", "STATE", "BRANCH", "OWNER", "RESULT"]))
            .block(title("landing queue", entries.len())),
        queue_area,
    );

    let shown = usize::from(events_area.height.saturating_sub(2));
    let items: Vec<ListItem<'_>> = view
        .events
        .iter()
        .rev()
        .take(shown)
        .map(|e| {
            ListItem::new(Line::from(format!(
                "{} {:<13} {} {}",
                text(&e["at"]),
                text(&e["kind"]),
                e["session"].as_str().unwrap_or(""),
                e["claim"].as_u64().map(|c| format!("claim {c}")).unwrap_or_default()
            )))
        })
        .collect();
    let events_block = title("events, newest first", view.events.len()).title_bottom(" q, Esc or Ctrl-C quits ");
    frame.render_widget(List::new(items).block(events_block), events_area);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    #[test]
    fn renders_sessions_claims_tasks_the_queue_and_events() {
        let mut view = View::default();
        let status = json!({
            "sessions": [{"id": "alice", "state": "live", "claims": 1, "branch": "main", "worktree": "/r", "client": "codex"},
                         {"id": "gone", "state": "ended", "claims": 0}],
            "claims": [{"id": 7, "session": "alice", "scopes": ["src/api.rs"], "expires_in_secs": 1740, "mode": "exclusive"}],
            "tasks": [{"id": 1, "status": "taken", "title": "write the API", "holder": "alice"}],
        });
        let events = json!({"events": [{"seq": 3, "at": "2026-11-23T08:00:00Z", "kind": "grant", "session": "alice", "claim": 7}], "cursor": 3});
        view.update(status, &events);
        view.queue = json!({"entries": [{"id": 4, "state": "landing", "phase": "test", "branch": "feat", "onto": "main",
                                          "owner": "alice"}]});
        let mut terminal = Terminal::new(TestBackend::new(100, 40)).expect("terminal");
        terminal.draw(|frame| render(frame, &view)).expect("draw");
        let screen: String = terminal.backend().buffer().content().iter().map(|cell| cell.symbol()).collect();
        for expected in [
            "sessions (1)",
            "alice",
            "codex",
            "claims (1)",
            "src/api.rs",
            "29m",
            "tasks (1)",
            "write the API",
            "landing queue (1)",
            "landing (test)",
            "feat → main",
            "grant",
            "claim 7",
            "Ctrl-C quits",
        ] {
            assert!(screen.contains(expected), "{expected:?} missing from the screen");
        }
        assert!(!screen.contains("gone"), "ended sessions are not shown");
        // The next read starts after what was shown: the reply's cursor, not the last event's seq.
        view.update(json!({}), &json!({"events": [], "cursor": 9}));
        assert_eq!(view.cursor, 9);
        view.update(json!({}), &json!({"events": []}));
        assert_eq!(view.cursor, 9, "a reply without a cursor keeps the old one");
    }
}
