//! Claim commands: `claim`, `release`, `renew`, `handoff`, `check`, `wait`, `claims`.

use lanes_proto::{
    AcquireParams, CheckParams, ErrorCode, HandoffParams, Mode, ReleaseParams, RenewParams, WaitParams, method,
};
use serde_json::{Value, json};

use super::{Env, Failure, ttl_secs};
use crate::cli::output::{Output, joined, secs};

pub fn claim(
    env: &Env,
    out: &Output,
    scopes: &[String],
    shared: bool,
    ttl: Option<String>,
    note: Option<String>,
    task: Option<String>,
) -> Result<(), Failure> {
    let params = AcquireParams {
        session: env.session.clone(),
        worktree: env.worktree(),
        scopes: scopes.iter().map(|s| env.scope_arg(s)).collect::<Result<_, _>>()?,
        mode: shared.then_some(Mode::Shared),
        ttl_secs: ttl_secs(ttl)?,
        note,
        task,
        bound_worktree: None,
    };
    let value = env.call(method::CLAIM_ACQUIRE, &params)?;
    out.print(&value, |v| {
        let c = &v["claim"];
        let mut text = format!(
            "claim {} granted on {} ({}, epoch {}, expires in {})",
            c["id"],
            joined(&c["scopes"], ", "),
            c["mode"].as_str().unwrap_or("exclusive"),
            c["epoch"],
            secs(&c["expires_in_secs"])
        );
        if let Some(epoch) = v["hub_epoch"].as_u64() {
            text.push_str(&format!("; confirmed by the hub, hub epoch {epoch}"));
        }
        for note in v["notes"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\nnote left by {} (claim {}, lapsed {}): {}",
                note["session"].as_str().unwrap_or("?"),
                note["claim_id"],
                note["expired_at"].as_str().unwrap_or("?"),
                note["note"].as_str().unwrap_or("")
            ));
        }
        text
    });
    Ok(())
}

pub fn release(
    env: &Env,
    out: &Output,
    claims: Vec<u64>,
    all: bool,
    epoch: Option<u64>,
    pending: bool,
) -> Result<(), Failure> {
    let params = ReleaseParams {
        session: env.session.clone(),
        claims: (!claims.is_empty()).then_some(claims),
        all: all.then_some(true),
        epoch,
        pending: pending.then_some(true),
    };
    let value = env.call(method::CLAIM_RELEASE, &params)?;
    out.print(&value, |v| match (joined(&v["released"], ", "), pending) {
        (ids, true) if ids.is_empty() => "no pending work to give up".to_owned(),
        (ids, true) => format!("gave up pending work {ids}: its paths are free (the changes themselves stay)"),
        (ids, false) if ids.is_empty() => "nothing to release".to_owned(),
        (ids, false) => match v["hub"].as_str() {
            Some(queued) if queued.starts_with("queued") => {
                format!("released claim {ids} here; the hub is told when it answers again ({queued})")
            }
            _ => format!("released claim {ids}"),
        },
    });
    Ok(())
}

pub fn renew(env: &Env, out: &Output, claim: u64, ttl: Option<String>, epoch: Option<u64>) -> Result<(), Failure> {
    let params = RenewParams { session: env.session.clone(), claim, ttl_secs: ttl_secs(ttl)?, epoch };
    let value = env.call(method::CLAIM_RENEW, &params)?;
    out.print(&value, |v| {
        let c = &v["claim"];
        format!("claim {} renewed (epoch {}, expires in {})", c["id"], c["epoch"], secs(&c["expires_in_secs"]))
    });
    Ok(())
}

pub fn handoff(env: &Env, out: &Output, claim: u64, to: String, epoch: Option<u64>) -> Result<(), Failure> {
    let params = HandoffParams { session: env.session.clone(), claim, to, epoch };
    let value = env.call(method::CLAIM_HANDOFF, &params)?;
    out.print(&value, |v| {
        let c = &v["claim"];
        format!("claim {} handed to {} (epoch {})", c["id"], c["session"].as_str().unwrap_or("?"), c["epoch"])
    });
    Ok(())
}

pub fn check(env: &Env, out: &Output, paths: &[String]) -> Result<(), Failure> {
    let params = CheckParams {
        session: env.session.clone(),
        worktree: env.worktree(),
        paths: paths.iter().map(|p| env.scope_arg(p)).collect::<Result<_, _>>()?,
    };
    let value = env.call(method::CLAIM_CHECK, &params)?;
    let holders = value["holders"].as_array().cloned().unwrap_or_default();
    out.print(&value, |v| {
        if let Some(own) = v["yours"].as_array().filter(|own| holders.is_empty() && !own.is_empty()) {
            let claims: Vec<String> = own
                .iter()
                .map(|c| {
                    format!(
                        "claim {} on {}, expires in {}",
                        c["id"],
                        joined(&c["scopes"], ", "),
                        secs(&c["expires_in_secs"])
                    )
                })
                .collect();
            return format!("you hold it: {}", claims.join("; "));
        }
        if holders.is_empty() {
            return format!("free: {}", paths.join(", "));
        }
        holders
            .iter()
            .map(|h| {
                format!(
                    "held by {} (claim {}, scope {}, worktree {}, expires in {})",
                    h["session"].as_str().unwrap_or("?"),
                    h["claim_id"],
                    h["scope"].as_str().unwrap_or("?"),
                    h["worktree"].as_str().unwrap_or("?"),
                    secs(&h["expires_in_secs"])
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    if holders.is_empty() { Ok(()) } else { Err(Failure::reported(ErrorCode::Conflict)) }
}

pub fn wait(env: &Env, out: &Output, targets: &[String]) -> Result<(), Failure> {
    let claim = match targets {
        [one] if one.chars().all(|c| c.is_ascii_digit()) => one.parse::<u64>().ok(),
        _ => None,
    };
    let paths = if claim.is_some() {
        Vec::new()
    } else {
        targets.iter().map(|t| env.scope_arg(t)).collect::<Result<_, _>>()?
    };
    let params = WaitParams { session: env.session.clone(), worktree: env.worktree(), claim, paths };
    let value = env.call(method::CLAIM_WAIT, &params)?;
    out.print(&value, |v| {
        let holders: Vec<String> = v["waiting_for"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} (claim {} on {})",
                    c["session"].as_str().unwrap_or("?"),
                    c["claim_id"],
                    c["scope"].as_str().unwrap_or("?")
                )
            })
            .collect();
        format!("waiting for {}; they are told, and you are told when it ends", holders.join(", "))
    });
    Ok(())
}

/// `lanes claims`: the acting session's live claims (its subagents' too).
pub fn claims(env: &Env, out: &Output) -> Result<(), Failure> {
    let status = env.call(method::STATUS, &json!({}))?;
    let mine = |c: &&Value| {
        c["session"].as_str().is_some_and(|holder| {
            holder == env.session || holder.strip_prefix(env.session.as_str()).is_some_and(|r| r.starts_with('/'))
        })
    };
    let claims: Vec<Value> = status["claims"].as_array().into_iter().flatten().filter(mine).cloned().collect();
    out.print(&json!({ "session": env.session, "claims": claims }), |v| {
        let rows: Vec<Vec<String>> = v["claims"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                vec![
                    c["id"].to_string(),
                    joined(&c["scopes"], " "),
                    c["mode"].as_str().unwrap_or("?").to_owned(),
                    secs(&c["expires_in_secs"]),
                    c["note"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        if rows.is_empty() {
            format!("{} holds no claims", env.session)
        } else {
            crate::cli::output::table(&["CLAIM", "SCOPES", "MODE", "LEFT", "NOTE"], &rows)
        }
    });
    Ok(())
}
