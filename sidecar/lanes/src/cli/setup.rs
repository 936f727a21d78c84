//! `lanes init` and `lanes init --undo`: config, git hooks, the sidecar.

use std::path::Path;

use lanes_proto::method;
use serde_json::json;

use super::{Env, Failure, hello_params};
use crate::cli::output::Output;
use crate::config::{TEMPLATE, commented_template, local_config_path};

pub fn init(env: &Env, out: &Output) -> Result<(), Failure> {
    let config = local_config_path(&env.location.common_dir);
    // The local file is the highest file layer: it holds only what the user sets there, so `.lanes.toml` and
    // the user's file take effect. A copy of the defaults an older `lanes init` wrote is commented out.
    let untouched_copy = std::fs::read_to_string(&config).is_ok_and(|text| text == TEMPLATE);
    let created = if config.exists() && !untouched_copy {
        false
    } else {
        std::fs::create_dir_all(config.parent().unwrap_or(Path::new(".")))
            .and_then(|()| {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut file =
                    std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&config)?;
                file.write_all(commented_template().as_bytes())
            })
            .map_err(|e| Failure::internal(format!("failed to write {}: {e}", config.display())))?;
        true
    };
    let hooks = super::githooks::install(&env.location.worktree)?;
    let hello = env.call(method::HELLO, &hello_params())?;
    let value = json!({
        "repo": env.location.common_dir,
        "config": config,
        "config_created": created,
        "git_hooks": hooks.iter().map(|h| json!({"hook": h.hook, "path": h.path, "action": h.action})).collect::<Vec<_>>(),
        "sidecar": {"pid": hello["pid"], "version": hello["version"], "socket": env.paths.socket},
        "session": env.session,
    });
    out.print(&value, |v| {
        format!(
            "lanes is set up in {}\n  config   {}{}\n  hooks    {}\n  sidecar  pid {} on {}\n  session  {} (set LANES_SESSION or --session to act as another)",
            env.location.worktree.display(),
            config.display(),
            if created { " (created)" } else { "" },
            hooks.iter().map(|h| format!("{} ({})", h.hook, h.action)).collect::<Vec<_>>().join(", "),
            v["sidecar"]["pid"],
            env.paths.socket.display(),
            env.session
        )
    });
    Ok(())
}

pub fn uninit(env: &Env, out: &Output) -> Result<(), Failure> {
    let hooks = super::githooks::uninstall(&env.location.worktree)?;
    let value = json!({
        "git_hooks": hooks.iter().map(|h| json!({"hook": h.hook, "path": h.path, "action": h.action})).collect::<Vec<_>>(),
    });
    out.print(&value, |_| hooks.iter().map(|h| format!("{}: {}", h.hook, h.action)).collect::<Vec<_>>().join("\n"));
    Ok(())
}
