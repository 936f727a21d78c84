//! Printing results: one JSON object on stdout with `--json`, readable text otherwise. Errors go to stderr
//! as text, or to stdout as `{"error":{…}}` with `--json`, so a script always gets one object.

use std::io::IsTerminal;

use serde_json::{Value, json};

use crate::cli::Failure;

/// Where and how results are printed.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
    /// Keep the result instead of printing it (`lanes mcp` answers a tool call with it).
    pub capture: Option<std::sync::Arc<std::sync::Mutex<Option<Value>>>>,
}

impl Output {
    /// Prints `value` as JSON, or the text `human` renders from it.
    pub fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        if let Some(capture) = &self.capture {
            *capture.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value.clone());
        } else if self.json {
            line(value);
        } else {
            let text = human(value);
            if !text.is_empty() {
                line(paint(text.trim_end(), colour_on(std::io::stdout().is_terminal())));
            }
        }
    }
}

/// Writes one line to stdout. A reader that went away (`lanes events | head -1`) ends the command quietly,
/// with success: what it wanted was printed.
pub fn line(text: impl std::fmt::Display) {
    bytes(format!("{text}\n").as_bytes());
}

/// Writes `bytes` to stdout, as [`line`] does.
pub fn bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("lanes: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Whether to colour text for a stream: only a terminal, and never with `NO_COLOR` set (no-color.org).
fn colour_on(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What a person should see first, coloured: refusals and warnings red, pending work yellow, what is free or
/// theirs green. Plain text when `enabled` is false.
fn paint(text: &str, enabled: bool) -> String {
    if !enabled {
        return text.to_owned();
    }
    const MARKS: [(&str, &str); 8] = [
        ("REFUSED", "31"),
        ("held by", "31"),
        ("WARNING", "31"),
        ("NOT CONNECTED", "31"),
        ("NOT checked", "31"),
        ("pending (", "33"),
        ("free:", "32"),
        ("you hold it", "32"),
    ];
    let mut out = text.to_owned();
    for (mark, colour) in MARKS {
        out = out.replace(mark, &format!("\x1b[{colour}m{mark}\x1b[0m"));
    }
    out
}

/// Prints a failure the way the output mode wants it.
pub fn failure(failure: &Failure, json_mode: bool) {
    if failure.message.is_empty() {
        return;
    }
    if json_mode {
        let mut error = json!({"code": failure.code, "message": failure.message});
        if let Some(conflicts) = failure.data.get("conflicts") {
            error["conflicts"] = conflicts.clone();
        }
        line(json!({ "error": error }));
    } else if colour_on(std::io::stderr().is_terminal()) {
        eprintln!("\x1b[31mlanes:\x1b[0m {}", failure.message);
    } else {
        eprintln!("lanes: {}", failure.message);
    }
}

/// `29m` for a number of seconds.
pub fn secs(value: &Value) -> String {
    lanes_core::human_duration(std::time::Duration::from_secs(value.as_u64().unwrap_or(0)))
}

/// The strings of a JSON array, joined.
pub fn joined(value: &Value, separator: &str) -> String {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(separator)
        })
        .unwrap_or_default()
}

/// A plain-text table with left-aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_marks_what_matters_and_only_when_enabled() {
        assert_eq!(paint("REFUSED (conflict)", false), "REFUSED (conflict)");
        assert_eq!(paint("REFUSED (conflict)", true), "\x1b[31mREFUSED\x1b[0m (conflict)");
        assert!(paint("  pending (feat)", true).contains("\x1b[33m"));
        assert!(!colour_on(false));
    }
}
