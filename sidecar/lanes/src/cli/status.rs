//! What is going on: `status`, `sessions`, `events`.

use std::path::Path;

use lanes_proto::{EventsParams, method};
use serde_json::{Value, json};

use super::{Env, Failure};
use crate::cli::output::{Output, joined, secs, table};

pub fn status(env: &Env, out: &Output) -> Result<(), Failure> {
    let mut value = env.call(method::STATUS, &json!({}))?;
    value["unchecked_edits"] = json!(unchecked_edits(&env.location.common_dir));
    out.print(&value, |v| render_status(v, &env.session));
    Ok(())
}

/// How many edits each session made that lanes could not check (the hook found no sidecar answering and
/// let them through), from `<git-common-dir>/lanes/unchecked.log`.
pub fn unchecked_edits(common_dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    let log = std::fs::read_to_string(common_dir.join("lanes").join("unchecked.log")).unwrap_or_default();
    for line in log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        if let Some(session) = line["session"].as_str() {
            *counts.entry(session.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

pub fn sessions(env: &Env, out: &Output, all: bool) -> Result<(), Failure> {
    let status = env.call(method::STATUS, &json!({}))?;
    let sessions: Vec<Value> =
        status["sessions"].as_array().into_iter().flatten().filter(|s| all || s["state"] == "live").cloned().collect();
    out.print(&json!({ "sessions": sessions }), |v| {
        let rows: Vec<Vec<String>> = v["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let text = |key: &str| s[key].as_str().unwrap_or("-").to_owned();
                let prompt: String = s["last_prompt"].as_str().unwrap_or("-").chars().take(40).collect();
                vec![
                    text("id"),
                    text("client"),
                    text("state"),
                    text("started_at"),
                    s["claims"].to_string(),
                    text("branch"),
                    text("model"),
                    text("last_checkpoint"),
                    prompt,
                ]
            })
            .collect();
        if rows.is_empty() {
            "no sessions".to_owned()
        } else {
            table(
                &["SESSION", "CLIENT", "STATE", "STARTED", "CLAIMS", "BRANCH", "MODEL", "CHECKPOINT", "LAST PROMPT"],
                &rows,
            )
        }
    });
    Ok(())
}

fn render_status(v: &Value, me: &str) -> String {
    let sidecar = &v["sidecar"];
    let mut text = format!(
        "repo     {}\nsidecar  pid {}, version {}, protocol {}\nyou      {me}\n",
        v["repo"].as_str().unwrap_or("?"),
        sidecar["pid"],
        sidecar["version"].as_str().unwrap_or("?"),
        sidecar["protocol"]
    );
    if let Some(lost) = sidecar["data_lost"].as_str() {
        text.push_str(&format!("WARNING  {lost}\n"));
    }
    if let Some(unchecked) = v["unchecked_edits"].as_object().filter(|u| !u.is_empty()) {
        let counts: Vec<String> = unchecked.iter().map(|(session, n)| format!("{session} {n}")).collect();
        text.push_str(&format!("unchecked edits (went ahead while lanes could not answer): {}\n", counts.join(", ")));
    }
    let hub = &v["hub"];
    if hub.is_object() {
        let outbox =
            hub["outbox"].as_u64().map_or_else(|| "not sent yet".to_owned(), |n| format!("{n} events waiting"));
        let line = match hub["connected"].as_str() {
            Some(url) => {
                format!("hub      {url}, project {}, outbox: {outbox}\n", hub["project"].as_str().unwrap_or("?"))
            }
            None => format!(
                "hub      NOT CONNECTED ({}); claims are refused as unavailable; outbox: {outbox}\n",
                hub["last_error"].as_str().unwrap_or("not tried yet")
            ),
        };
        text.push_str(&line);
        for claim in hub["claims"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "         {} holds {} on {} (claim {}, {}s left)\n",
                claim["holder"].as_str().unwrap_or("?"),
                joined(&claim["scopes"], " "),
                claim["origin"].as_str().unwrap_or("?"),
                claim["id"],
                claim["ttl_secs"]
            ));
        }
    }
    let live: Vec<&Value> = v["sessions"].as_array().into_iter().flatten().filter(|s| s["state"] == "live").collect();
    if !live.is_empty() {
        let rows: Vec<Vec<String>> = live
            .iter()
            .map(|s| {
                vec![
                    s["id"].as_str().unwrap_or("?").to_owned(),
                    s["claims"].to_string(),
                    s["unread"].to_string(),
                    s["branch"].as_str().unwrap_or("-").to_owned(),
                    s["worktree"].as_str().unwrap_or("-").to_owned(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(&["SESSION", "CLAIMS", "UNREAD", "BRANCH", "WORKTREE"], &rows));
        text.push('\n');
    }
    if v["tasks"].as_array().is_some_and(|t| !t.is_empty()) {
        text.push('\n');
        text.push_str(&super::tasks::render_tasks(&v["tasks"]));
        text.push('\n');
    }
    let claims = v["claims"].as_array().cloned().unwrap_or_default();
    if claims.is_empty() {
        text.push_str("\nno live claims\n");
    } else {
        let rows: Vec<Vec<String>> = claims
            .iter()
            .map(|c| {
                let expires = if c["pending"] == true {
                    format!("pending ({})", c["branch"].as_str().unwrap_or("no branch"))
                } else {
                    secs(&c["expires_in_secs"])
                };
                vec![
                    c["id"].to_string(),
                    c["session"].as_str().unwrap_or("?").to_owned(),
                    c["mode"].as_str().unwrap_or("?").to_owned(),
                    expires,
                    c["epoch"].to_string(),
                    joined(&c["scopes"], " "),
                    c["worktree"].as_str().unwrap_or("?").to_owned(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(&["CLAIM", "SESSION", "MODE", "EXPIRES", "EPOCH", "SCOPES", "WORKTREE"], &rows));
        text.push('\n');
        if claims.iter().any(|c| c["pending"] == true) {
            text.push_str(
                "pending: the session ended (or its lease ran out) before its changes landed; the paths stay taken \
                 until they are merged into the base, reverted, or given up (`lanes release --pending <claim>`)\n",
            );
        }
    }
    text
}

/// Prints the event log as NDJSON (one compact line per event), from `since`; with `follow`, keeps polling
/// one connection and prints new events as they come, so a reader can stop and resume at any cursor.
pub fn events(env: &Env, out: &Output, since: u64, limit: u32, follow: bool) -> Result<(), Failure> {
    let mut client = env.connect()?;
    let mut cursor = since;
    loop {
        let value = client.call_value(method::EVENTS, &EventsParams { since: cursor, limit: Some(limit) })?;
        if out.json && !follow {
            out.print(&value, |_| String::new());
            return Ok(());
        }
        for event in value["events"].as_array().into_iter().flatten() {
            crate::cli::output::line(event);
        }
        cursor = value["cursor"].as_u64().unwrap_or(cursor);
        if !follow {
            return Ok(());
        }
        if value["events"].as_array().is_none_or(Vec::is_empty) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}
