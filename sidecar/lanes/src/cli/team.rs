//! `lanes team up <template> [--launch]`: a worktree per role (on a `team/<role>` branch, beside the main
//! worktree), the template's tasks seeded on the board, and each role's instructions left in its worktree's
//! git dir (`lanes-role.md`), where the SessionStart hook reads them for any session that starts there. With
//! `--launch`, a Claude Code session per role in a tmux session.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lanes_proto::repo::RepoLocation;
use lanes_proto::{TaskAddParams, method};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::output::Output;
use crate::cli::{Env, Failure};
use crate::git;

/// The templates shipped with lanes.
const BUILT_IN: &[(&str, &str)] = &[("feature", include_str!("../../../../templates/teams/feature.toml"))];

/// The file in a worktree's git dir that holds its role's instructions.
pub const ROLE_FILE: &str = "lanes-role.md";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Template {
    name: String,
    #[serde(default)]
    description: String,
    roles: Vec<Role>,
    #[serde(default)]
    tasks: Vec<TemplateTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Role {
    name: String,
    instructions: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateTask {
    title: String,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

fn load(name: &str) -> Result<Template, Failure> {
    let text = match BUILT_IN.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => (*text).to_owned(),
        None => std::fs::read_to_string(name).map_err(|_| {
            let known: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            Failure::invalid(format!(
                "no team template {name:?}: use one of {} or a path to a .toml file",
                known.join(", ")
            ))
        })?,
    };
    let template: Template =
        toml::from_str(&text).map_err(|e| Failure::invalid(format!("invalid team template {name}: {e}")))?;
    if template
        .roles
        .iter()
        .any(|r| r.name.is_empty() || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(Failure::invalid("role names must be letters, digits and dashes"));
    }
    Ok(template)
}

pub fn up(env: &Env, out: &Output, name: &str, launch: bool) -> Result<(), Failure> {
    let template = load(name)?;
    let main = env.location.common_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| env.location.worktree.clone());
    let base = main.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());
    let mut roles = Vec::new();
    for role in &template.roles {
        let path = main.parent().unwrap_or(&main).join(format!("{base}-{}", role.name));
        let branch = format!("team/{}", role.name);
        if !path.exists() {
            let exists =
                git::run(&main, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")]).is_ok();
            let path_text = path.to_string_lossy();
            let args: Vec<&str> = if exists {
                vec!["worktree", "add", "-q", &path_text, &branch]
            } else {
                vec!["worktree", "add", "-q", "-b", &branch, &path_text]
            };
            git::run(&main, &args).map_err(Failure::from)?;
        }
        let location = RepoLocation::discover(&path).map_err(|e| Failure::internal(e.to_string()))?;
        let text = format!("Team {} — your role: {}\n\n{}\n", template.name, role.name, role.instructions);
        std::fs::write(location.git_dir.join(ROLE_FILE), text).map_err(|e| Failure::internal(e.to_string()))?;
        roles.push(json!({"role": role.name, "worktree": path, "branch": branch}));
    }
    let mut ids: HashMap<&str, u64> = HashMap::new();
    let mut tasks = Vec::new();
    // Bringing a team up again reuses the tasks it already seeded (same title, not done).
    let board = env.call(method::TASK_LIST, &lanes_proto::TaskListParams { ready: false })?;
    let existing: Vec<Value> = board["tasks"].as_array().cloned().unwrap_or_default();
    for task in &template.tasks {
        if let Some(found) = existing.iter().find(|t| t["title"] == task.title.as_str() && t["status"] != "done") {
            if let Some(id) = found["id"].as_u64() {
                ids.insert(&task.title, id);
            }
            tasks.push(found.clone());
            continue;
        }
        let after = task
            .after
            .iter()
            .map(|title| {
                ids.get(title.as_str())
                    .copied()
                    .ok_or_else(|| Failure::invalid(format!("task {:?} waits for unknown task {title:?}", task.title)))
            })
            .collect::<Result<Vec<u64>, Failure>>()?;
        let params = TaskAddParams {
            session: env.session.clone(),
            worktree: main.to_string_lossy().into_owned(),
            title: task.title.clone(),
            after,
            scopes: task.scopes.iter().map(|s| main.join(s).to_string_lossy().into_owned()).collect(),
        };
        let added = env.call(method::TASK_ADD, &params)?;
        if let Some(id) = added["task"]["id"].as_u64() {
            ids.insert(&task.title, id);
        }
        tasks.push(added["task"].clone());
    }
    let launched = if launch { Some(launch_in_tmux(&template.name, &roles)?) } else { None };
    let value = json!({"team": template.name, "description": template.description, "roles": roles, "tasks": tasks, "tmux": launched});
    out.print(&value, |v| {
        let mut text =
            format!("team {} is up: {}", v["team"].as_str().unwrap_or("?"), v["description"].as_str().unwrap_or(""));
        for role in v["roles"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\n  {:<10} {}",
                role["role"].as_str().unwrap_or("?"),
                role["worktree"].as_str().unwrap_or("?")
            ));
        }
        text.push_str(&format!(
            "\n{} tasks on the board (`lanes task list`)",
            v["tasks"].as_array().map_or(0, Vec::len)
        ));
        match v["tmux"].as_str() {
            Some(session) => text.push_str(&format!(
                "\nlaunched: tmux attach -t {session} (a window per role; claude asks once per worktree whether to \
                 trust it, then its role comes with SessionStart)"
            )),
            None => text.push_str(
                "\nstart `claude` in each worktree (or re-run with --launch): its role comes with SessionStart",
            ),
        }
        text
    });
    Ok(())
}

/// Opens a tmux session with a window per role running `claude` in that role's worktree.
fn launch_in_tmux(team: &str, roles: &[Value]) -> Result<String, Failure> {
    let session = format!("lanes-{team}");
    let tmux = |args: &[&str]| -> Result<(), Failure> {
        let status = Command::new("tmux")
            .args(args)
            .status()
            .map_err(|e| Failure::invalid(format!("--launch needs tmux on PATH: {e}")))?;
        if status.success() { Ok(()) } else { Err(Failure::internal(format!("tmux {} failed", args.join(" ")))) }
    };
    for (i, role) in roles.iter().enumerate() {
        let name = role["role"].as_str().unwrap_or("role");
        let dir = PathBuf::from(role["worktree"].as_str().unwrap_or("."));
        let dir = dir.to_string_lossy();
        if i == 0 {
            tmux(&["new-session", "-d", "-s", &session, "-n", name, "-c", &dir, "claude"])?;
        } else {
            tmux(&["new-window", "-t", &session, "-n", name, "-c", &dir, "claude"])?;
        }
    }
    Ok(session)
}
