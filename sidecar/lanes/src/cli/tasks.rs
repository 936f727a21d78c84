//! The task board: `task add|list|next|done|show|drop|edit|give-back`.

use lanes_proto::{ErrorCode, TaskAddParams, TaskDoneParams, TaskListParams, TaskNextParams, method};
use serde_json::{Value, json};

use super::{Env, Failure};
use crate::cli::output::{Output, joined, table};

pub fn task_add(env: &Env, out: &Output, title: String, after: Vec<u64>, scopes: &[String]) -> Result<(), Failure> {
    let scopes = scopes.iter().map(|s| env.scope_arg(s)).collect::<Result<_, _>>()?;
    let params = TaskAddParams { session: env.session.clone(), worktree: env.worktree(), title, after, scopes };
    let value = env.call(method::TASK_ADD, &params)?;
    out.print(&value, |v| format!("task {} added: {}", v["task"]["id"], v["task"]["title"].as_str().unwrap_or("")));
    Ok(())
}

pub fn task_list(env: &Env, out: &Output, ready: bool) -> Result<(), Failure> {
    let value = env.call(method::TASK_LIST, &TaskListParams { ready })?;
    out.print(&value, |v| render_tasks(&v["tasks"]));
    Ok(())
}

pub(super) fn render_tasks(tasks: &Value) -> String {
    let rows: Vec<Vec<String>> = tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                t["id"].to_string(),
                t["status"].as_str().unwrap_or("?").to_owned(),
                t["title"].as_str().unwrap_or("").to_owned(),
                joined(&t["after"], ","),
                joined(&t["scopes"], " "),
                t["holder"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        "the board is empty: `lanes task add <title>`".to_owned()
    } else {
        table(&["TASK", "STATUS", "TITLE", "AFTER", "SCOPES", "HOLDER"], &rows)
    }
}

pub fn task_next(env: &Env, out: &Output) -> Result<(), Failure> {
    let value =
        env.call(method::TASK_NEXT, &TaskNextParams { session: env.session.clone(), worktree: env.worktree() })?;
    out.print(&value, |v| {
        let mut text = format!("took task {}: {}", v["task"]["id"], v["task"]["title"].as_str().unwrap_or(""));
        if let Some(claim) = v["claim"].as_object() {
            text.push_str(&format!("\nclaim {} on {}", claim["id"], joined(&claim["scopes"], ", ")));
        }
        if let Some(note) = v["task"]["note"].as_str() {
            text.push_str(&format!("\nnote from the last holder: {note}"));
        }
        text
    });
    Ok(())
}

pub fn task_done(env: &Env, out: &Output, id: u64) -> Result<(), Failure> {
    let value = env.call(method::TASK_DONE, &TaskDoneParams { session: env.session.clone(), task: id })?;
    out.print(&value, |v| format!("task {} done; its claim is released", v["task"]["id"]));
    Ok(())
}

pub fn task_change(
    env: &Env,
    out: &Output,
    id: u64,
    action: &str,
    title: Option<String>,
    scopes: &[String],
    note: Option<String>,
) -> Result<(), Failure> {
    let scopes = if scopes.is_empty() {
        None
    } else {
        Some(scopes.iter().map(|s| env.scope_arg(s)).collect::<Result<Vec<_>, _>>()?)
    };
    let params = lanes_proto::TaskChangeParams {
        session: env.session.clone(),
        worktree: env.worktree(),
        task: id,
        action: action.to_owned(),
        title,
        scopes,
        note,
    };
    let value = env.call(method::TASK_CHANGE, &params)?;
    out.print(&value, |v| {
        let task = &v["task"];
        match action {
            "drop" => format!("task {} dropped from the board", task["id"]),
            "give_back" => format!("task {} is back on the board; its claim is released", task["id"]),
            _ => format!(
                "task {} is now \"{}\" on {}",
                task["id"],
                task["title"].as_str().unwrap_or(""),
                joined(&task["scopes"], ", ")
            ),
        }
    });
    Ok(())
}

pub fn task_show(env: &Env, out: &Output, id: u64) -> Result<(), Failure> {
    let value = env.call(method::TASK_LIST, &TaskListParams { ready: false })?;
    let task = value["tasks"].as_array().into_iter().flatten().find(|t| t["id"] == id).cloned();
    let Some(task) = task else {
        return Err(Failure {
            code: ErrorCode::NotFound,
            message: format!("no task {id}: `lanes task list` shows the board"),
            data: Value::Null,
        });
    };
    out.print(&json!({ "task": task }), |v| {
        let t = &v["task"];
        format!(
            "task {} ({})\n  {}\n  after: {}\n  scopes: {}\n  holder: {}\n  note: {}",
            t["id"],
            t["status"].as_str().unwrap_or("?"),
            t["title"].as_str().unwrap_or(""),
            joined(&t["after"], ", "),
            joined(&t["scopes"], " "),
            t["holder"].as_str().unwrap_or("-"),
            t["note"].as_str().unwrap_or("-")
        )
    });
    Ok(())
}
