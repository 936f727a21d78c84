//! The task board over the wire: add, list, next (take and claim in one step), done, and change (drop, edit,
//! give back).

use jsonrpsee::types::Params;
use lanes_core::{Task, TaskStatus};
use lanes_proto::{
    TaskAddParams, TaskDoneParams, TaskListParams, TaskNextParams, TaskNextReply, TaskReply, TaskView, TasksReply,
    method,
};

use super::{Context, Methods, RpcResult, add, claim_view, failure_to_rpc, parse, principal, reply, resolve_all};
use crate::daemon::state::{Answer, Command, TaskChange, now};

pub(super) fn register(module: &mut Methods) {
    add(module, method::TASK_ADD, |p, cx| async move { add_task(p, &cx).await });
    add(module, method::TASK_LIST, |p, cx| async move { list(p, &cx).await });
    add(module, method::TASK_NEXT, |p, cx| async move { next(p, &cx).await });
    add(module, method::TASK_DONE, |p, cx| async move { done(p, &cx).await });
    add(module, method::TASK_CHANGE, |p, cx| async move { change(p, &cx).await });
}

async fn add_task(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: TaskAddParams = parse(&params)?;
    principal(&p.session)?;
    let (root, _) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let scopes = resolve_all(&p.scopes, &root)?;
    let Answer::Task(task) = cx.ask(Command::TaskAdd { title: p.title, after: p.after, scopes }).await? else {
        unreachable!("task add answers Task")
    };
    reply(&TaskReply { task: view(&task, false, false) })
}

async fn list(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: TaskListParams = if params.as_str().is_some() { parse(&params)? } else { TaskListParams::default() };
    let Answer::Tasks(tasks) = cx.ask(Command::Tasks).await? else { unreachable!("tasks answers Tasks") };
    let tasks = tasks
        .iter()
        .filter(|(_, ready, _)| *ready || !p.ready)
        .map(|(t, ready, stalled)| view(t, *ready, *stalled))
        .collect();
    reply(&TasksReply { tasks })
}

async fn next(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: TaskNextParams = parse(&params)?;
    let who = principal(&p.session)?;
    let (_, worktree) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
    let Answer::Taken(task, grant) = cx.ask(Command::TaskNext { who, worktree }).await? else {
        unreachable!("task next answers Taken")
    };
    let now = now();
    reply(&TaskNextReply { task: view(&task, false, false), claim: grant.map(|g| claim_view(&g.claim, now)) })
}

async fn change(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: lanes_proto::TaskChangeParams = parse(&params)?;
    let who = principal(&p.session)?;
    let change = match p.action.as_str() {
        "drop" => TaskChange::Drop,
        "give_back" => TaskChange::GiveBack { note: p.note },
        "edit" => {
            let scopes = match &p.scopes {
                Some(scopes) => {
                    let (root, _) = cx.worktree(&p.worktree).map_err(failure_to_rpc)?;
                    Some(resolve_all(scopes, &root)?)
                }
                None => None,
            };
            TaskChange::Edit { title: p.title, scopes }
        }
        other => {
            let message = format!("unknown task change {other:?}: use drop, edit or give_back");
            return Err(super::error(lanes_proto::ErrorCode::InvalidArgument, message, Vec::new()));
        }
    };
    let Answer::Task(task) = cx.ask(Command::TaskChange { who, task: p.task, change }).await? else {
        unreachable!("task change answers Task")
    };
    reply(&TaskReply { task: view(&task, false, false) })
}

async fn done(params: Params<'static>, cx: &Context) -> RpcResult {
    let p: TaskDoneParams = parse(&params)?;
    let who = principal(&p.session)?;
    let Answer::Task(task) = cx.ask(Command::TaskDone { who, task: p.task }).await? else {
        unreachable!("task done answers Task")
    };
    reply(&TaskReply { task: view(&task, false, false) })
}

pub(crate) fn view(task: &Task, ready: bool, stalled: bool) -> TaskView {
    let status = match task.status {
        TaskStatus::Open if ready => "ready",
        TaskStatus::Open => "open",
        TaskStatus::Taken if stalled => "stalled",
        TaskStatus::Taken => "taken",
        TaskStatus::Done => "done",
        TaskStatus::Dropped => "dropped",
    };
    TaskView {
        id: task.id,
        title: task.title.clone(),
        status: status.to_owned(),
        after: task.after.clone(),
        scopes: task.scopes.iter().map(ToString::to_string).collect(),
        holder: task.holder.as_ref().map(ToString::to_string),
        claim: task.claim.map(|c| c.0),
        note: task.note.clone(),
    }
}
