//! `sidecar start|stop|status`.

use std::time::{Duration, Instant};

use lanes_proto::lifecycle::{Probe, sidecar_alive, wait_until_stopped};
use lanes_proto::{ErrorCode, method};
use serde_json::{Value, json};

use super::{Env, Failure, hello_params};
use crate::cli::output::Output;

/// Starts the sidecar with this shell's `LANES_*` settings: the one place a client's environment reaches it.
pub fn sidecar_start(env: &Env, out: &Output) -> Result<(), Failure> {
    let hello = env.call_passing(true, method::HELLO, &hello_params())?;
    out.print(
        &json!({"running": true, "pid": hello["pid"], "version": hello["version"], "socket": env.paths.socket}),
        |v| format!("sidecar running (pid {}) on {}", v["pid"], env.paths.socket.display()),
    );
    Ok(())
}

pub fn sidecar_stop(env: &Env, out: &Output) -> Result<(), Failure> {
    let program = std::env::current_exe().unwrap_or_default();
    let pid = match env.launcher(&program).probe(Duration::from_secs(2)) {
        Probe::Ready(mut client, hello) | Probe::NeedsRestart(mut client, hello) => {
            let _ = client.call_value(method::SHUTDOWN, &json!({}));
            Some(hello.pid)
        }
        Probe::Unreachable(_) => None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let timed_out = |why: String| Failure {
        code: ErrorCode::Unavailable,
        message: format!("{why}; its pid is in {}", env.paths.pidfile.display()),
        data: Value::Null,
    };
    match pid {
        // Wait for the exit of the sidecar that was told to stop (its lock goes just before), so `stop` then
        // `start` never overlap. A client racing the stop may already have started the next one; that one is
        // not this command's to wait for.
        Some(pid) => {
            while process_alive(pid) {
                if Instant::now() >= deadline {
                    return Err(timed_out(format!("the sidecar (pid {pid}) did not stop in time")));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        None => wait_until_stopped(&env.paths, deadline).map_err(|e| timed_out(e.to_string()))?,
    }
    out.print(&json!({"stopped": pid.is_some(), "pid": pid}), |_| match pid {
        Some(pid) => format!("sidecar stopped (pid {pid})"),
        None => "no sidecar was running".to_owned(),
    });
    Ok(())
}

/// Whether a process runs (and is not a zombie waiting to be reaped), from /proc.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

pub fn sidecar_status(env: &Env, out: &Output) -> Result<(), Failure> {
    let program = std::env::current_exe().unwrap_or_default();
    let value = match env.launcher(&program).probe(Duration::from_secs(2)) {
        Probe::Ready(_, hello) | Probe::NeedsRestart(_, hello) => json!({
            "running": true, "pid": hello.pid, "version": hello.version, "protocol": hello.protocol,
            "socket": env.paths.socket, "current": hello.version == env!("CARGO_PKG_VERSION"),
        }),
        Probe::Unreachable(e) => json!({
            "running": false,
            "locked": sidecar_alive(&env.paths).unwrap_or(false),
            "socket": env.paths.socket,
            "reason": e.to_string(),
        }),
    };
    let running = value["running"] == true;
    out.print(&value, |v| {
        if running {
            format!(
                "sidecar running: pid {}, version {}, socket {}",
                v["pid"],
                v["version"].as_str().unwrap_or("?"),
                env.paths.socket.display()
            )
        } else {
            "sidecar not running (any lanes command starts it)".to_owned()
        }
    });
    if running { Ok(()) } else { Err(Failure::reported(ErrorCode::Unavailable)) }
}
