use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{TestEnv, eventually, process_gone};

#[test]
fn sixteen_racing_clients_start_exactly_one_sidecar() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let children: Vec<_> = (0..16)
        .map(|_| {
            env.lanes_command(&repo, &["--json", "sidecar", "start"]).stdout(Stdio::piped()).spawn().expect("spawn")
        })
        .collect();
    let mut pids: Vec<u64> = children
        .into_iter()
        .map(|child| {
            let run = crate::common::run_of(child.wait_with_output().expect("wait"));
            run.success().json()["pid"].as_u64().expect("pid")
        })
        .collect();
    pids.dedup();
    assert_eq!(pids.len(), 1, "clients saw several sidecars: {pids:?}");
    let sidecars = count_sidecars_for(&repo);
    assert_eq!(sidecars, 1, "expected exactly one sidecar process");
}

fn count_sidecars_for(repo: &std::path::Path) -> usize {
    let runs_sidecar = |dir: &std::path::Path| {
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.windows(2).any(|w| w == [b"sidecar".as_slice(), b"run".as_slice()])
    };
    // A sidecar's git child, forked and not yet exec'd, looks like a sidecar: it has a sidecar for a parent.
    let parent = |dir: &std::path::Path| {
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).unwrap_or("0").to_owned();
        std::path::PathBuf::from("/proc").join(ppid)
    };
    std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let dir = e.path();
            let cwd = std::fs::read_link(dir.join("cwd")).unwrap_or_default();
            runs_sidecar(&dir)
                && !runs_sidecar(&parent(&dir))
                && cwd == repo
                && !process_gone(e.file_name().to_string_lossy().parse().unwrap_or(0))
        })
        .count()
}

#[test]
fn socket_and_directory_are_private() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, _) = env.start_sidecar(&repo);
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().expect("dir")), 0o700);
    assert!(socket.as_os_str().len() < 100, "socket path too long: {}", socket.display());
}

/// A repository whose sidecar was just killed with SIGKILL: the env, the repo, its socket and the dead pid.
fn killed_sidecar() -> (TestEnv, std::path::PathBuf, std::path::PathBuf, u32) {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    crate::common::kill9(pid);
    assert!(eventually(Duration::from_secs(5), || process_gone(pid)));
    (env, repo, socket, pid)
}

#[test]
fn stale_socket_is_replaced_and_stop_waits_until_gone() {
    let (env, repo, socket, pid) = killed_sidecar();
    assert!(socket.exists(), "kill -9 leaves the socket file behind");
    // The next command finds a refused socket, replaces it, and gets a new sidecar.
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    let new_pid = status["sidecar"]["pid"].as_u64().expect("pid") as u32;
    assert_ne!(new_pid, pid);

    let stopped = env.lanes(&repo, &["--json", "sidecar", "stop"]).success().json();
    assert_eq!(stopped["pid"], new_pid);
    assert!(process_gone(new_pid), "sidecar stop returned before the process exited");
    assert!(!socket.exists(), "a clean stop removes the socket");
    assert_eq!(env.lanes(&repo, &["sidecar", "status"]).code, 1);
    // Stopping again is fine.
    assert_eq!(env.lanes(&repo, &["--json", "sidecar", "stop"]).success().json()["stopped"], false);
}

#[test]
fn a_killed_sidecar_still_holding_its_lock_is_waited_for() {
    let (env, repo, socket, pid) = killed_sidecar();
    // A process whose last thread is still exiting (in an fsync, say) holds the pidfile lock for a moment after
    // it stops answering; stand in for it. While the lock is held, the next command must wait: it starts no
    // second sidecar and does not answer; once the lock goes, it starts exactly one and answers.
    let pidfile = std::fs::OpenOptions::new().write(true).open(socket.with_extension("pid")).expect("pidfile");
    pidfile.lock().expect("lock");
    let mut waiting = env.lanes_command(&repo, &["--json", "status"]).stdout(Stdio::piped()).spawn().expect("status");
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(count_sidecars_for(&repo), 0, "a sidecar was started while the old one held its lock");
        assert!(waiting.try_wait().expect("try_wait").is_none(), "the command answered while the lock was held");
    }
    drop(pidfile);
    let status = crate::common::run_of(waiting.wait_with_output().expect("wait")).success().json();
    assert_ne!(status["sidecar"]["pid"].as_u64().expect("pid") as u32, pid);
    assert_eq!(count_sidecars_for(&repo), 1);
}

#[test]
fn a_sidecar_that_cannot_start_says_why_in_its_log() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    // A directory where the state database should be: SQLite cannot open it.
    std::fs::create_dir_all(repo.join(".git/lanes/state.db")).expect("mkdir");
    let started = env.lanes(&repo, &["--json", "sidecar", "start"]);
    assert_ne!(started.code, 0);
    // At once, pointing at the log, rather than after the start budget with "did not come up in time".
    let said = format!("{}{}", started.stdout, started.stderr);
    assert!(said.contains("exited as it started") && said.contains("sidecar.log"), "{said}");
    let log = std::fs::read_to_string(repo.join(".git/lanes/sidecar.log")).expect("log");
    assert!(log.contains("sidecar stopped: failed to open the state database"), "{log}");
}

#[test]
fn version_mismatch_restarts_the_sidecar() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut old = env
        .lanes_command(&repo, &["sidecar", "run", "--report-version", "0.0.1-old"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn old sidecar");
    assert!(eventually(
        Duration::from_secs(5),
        || env.lanes(&repo, &["--json", "sidecar", "status"]).json()["version"] == "0.0.1-old"
    ));
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert_eq!(status["sidecar"]["version"], env!("CARGO_PKG_VERSION"));
    assert_ne!(status["sidecar"]["pid"].as_u64(), Some(u64::from(old.id())));
    let exit = old.wait().expect("old sidecar exits");
    assert!(exit.success(), "the old sidecar shut down cleanly");
}

#[test]
fn idle_sidecar_exits_and_restarts_on_demand() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut command = env.lanes_command(&repo, &["--json", "sidecar", "start"]);
    command.env("LANES_IDLE_TIMEOUT", "1s");
    let started = crate::common::run_of(command.output().expect("run")).success().json();
    let pid = started["pid"].as_u64().expect("pid") as u32;
    assert!(eventually(Duration::from_secs(15), || process_gone(pid)), "idle sidecar did not exit");
    env.lanes(&repo, &["status"]).success();
}

#[test]
fn a_live_claim_keeps_an_idle_sidecar_running() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut command = env.lanes_command(&repo, &["sidecar", "start"]);
    command.env("LANES_IDLE_TIMEOUT", "1s").env("LANES_LOG", "info");
    crate::common::run_of(command.output().expect("run")).success();
    env.lanes(&repo, &["claim", "src"]).success();
    let pid = env.sidecar_pid(&repo).expect("running");
    // The sidecar says when it finds itself idle and stays for the claim: wait for that decision, not a clock.
    let log = env.root().join("r/.git/lanes/sidecar.log");
    let decided = || std::fs::read_to_string(&log).is_ok_and(|text| text.contains("live claim(s) keep the sidecar"));
    assert!(eventually(Duration::from_secs(30), decided), "the sidecar never decided on its idleness");
    assert!(!process_gone(pid), "the sidecar exited while a claim was live");
    env.lanes(&repo, &["release", "--all"]).success();
    assert!(eventually(Duration::from_secs(30), || process_gone(pid)), "released, the idle sidecar stayed");
}

/// A repository removed under its sidecar (a test's temporary clone, a deleted checkout) takes the sidecar with
/// it, even with a claim live: nothing there is left to protect, and every git command it ran would fail.
#[test]
fn a_sidecar_whose_repository_is_removed_exits() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["claim", "src"]).success();
    let pid = env.sidecar_pid(&repo).expect("running");
    std::fs::remove_dir_all(&repo).expect("rm -rf");
    assert!(eventually(Duration::from_secs(10), || process_gone(pid)), "the sidecar outlived its repository");
}

/// When git cannot list the worktrees (here a HEAD it cannot read), the full round waits for its next turn:
/// a round that failed was due again at once, so it spawned git a thousand times a second, without end.
#[test]
fn a_worktree_listing_that_fails_is_not_retried_in_a_loop() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::write(repo.join(".git/HEAD"), "not a ref\n").expect("write");
    let mut command = env.lanes_command(&repo, &["sidecar", "start"]);
    command.env("LANES_LOG", "info");
    crate::common::run_of(command.output().expect("run")).success();
    let log = repo.join(".git/lanes/sidecar.log");
    let failures = || std::fs::read_to_string(&log).unwrap_or_default().matches("could not list the worktrees").count();
    assert!(eventually(Duration::from_secs(10), || failures() > 0), "no full round came");
    std::thread::sleep(Duration::from_secs(2));
    assert!(failures() <= 3, "the listing was tried {} times in 2 s", failures());
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
}

/// A sidecar a client starts on demand runs on the config files, not on that client's `LANES_*` settings;
/// `lanes sidecar start` takes them, and `lanes doctor` says the running settings differ from the files.
#[test]
fn only_an_explicit_start_passes_lanes_settings_to_the_sidecar() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut claim = env.lanes_command(&repo, &["--json", "claim", "src"]);
    claim.env("LANES_DEFAULT_TTL", "2m").env("LANES_CONTENTION", "worktree");
    crate::common::run_of(claim.output().expect("run")).success();
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert_eq!(status["sidecar"]["settings"]["default_ttl"], "\"30m\"", "{status}");
    assert!(status["sidecar"]["from_env"].is_null(), "{status}");
    let doctor = env.lanes(&repo, &["--json", "doctor"]).json();
    let sidecar = doctor["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "sidecar").cloned();
    assert_eq!(sidecar.expect("a sidecar check")["status"], "ok", "{doctor}");

    env.lanes(&repo, &["sidecar", "stop"]).success();
    let mut start = env.lanes_command(&repo, &["sidecar", "start"]);
    start.env("LANES_DEFAULT_TTL", "2m");
    crate::common::run_of(start.output().expect("run")).success();
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert_eq!(status["sidecar"]["settings"]["default_ttl"], "\"2m\"", "{status}");
    assert_eq!(status["sidecar"]["from_env"], serde_json::json!(["LANES_DEFAULT_TTL"]));
    let doctor = env.lanes(&repo, &["--json", "doctor"]).json();
    let sidecar = doctor["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "sidecar").cloned();
    let sidecar = sidecar.expect("a sidecar check");
    assert_eq!(sidecar["status"], "warn", "{doctor}");
    let detail = sidecar["detail"].as_str().expect("detail");
    assert!(detail.contains("default_ttl = \"2m\" (the files say \"30m\")"), "{detail}");
    assert!(detail.contains("started with LANES_DEFAULT_TTL set"), "{detail}");
}

/// Whether this test run can run code as uid 65534 (root, setpriv and python3); says so when it cannot.
fn can_act_as_another_user() -> bool {
    let can = crate::common::current_uid() == 0
        && std::path::Path::new("/usr/bin/setpriv").exists()
        && std::path::Path::new("/usr/bin/python3").exists();
    if !can {
        eprintln!("skipped: needs root, setpriv and /usr/bin/python3 to act as another user");
    }
    can
}

/// The socket's directory is private, but even if someone opens it up, a peer with another uid is refused
/// (SO_PEERCRED): the sidecar closes the connection without answering.
#[test]
fn a_peer_with_another_uid_is_refused() {
    if !can_act_as_another_user() {
        return;
    }
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    let open =
        |p: &std::path::Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    open(&socket, 0o666);
    let mut dir = socket.parent().expect("dir").to_path_buf();
    while dir != std::path::Path::new("/tmp") {
        open(&dir, 0o755);
        dir.pop();
    }
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ntry:\n    s.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\",\"params\":{}}\\n')\n    print('answered' if s.recv(65536) else 'refused')\nexcept (ConnectionResetError, BrokenPipeError):\n    print('refused')";
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script])
        .arg(&socket)
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the foreign client could not even connect: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "refused", "a foreign uid got an answer");
    assert_eq!(env.sidecar_pid(&repo), Some(pid));
}

/// `lanes claim` racing `lanes sidecar stop`: whatever the claim was told is what happened. A claim answered
/// as failed is not held afterwards, and one answered as granted is.
#[test]
fn a_claim_racing_a_stop_is_answered_as_decided() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut outcomes = (0, 0);
    for round in 0..20 {
        env.start_sidecar(&repo);
        let path = format!("src/race{round}.rs");
        let claim = env.lanes_command(&repo, &["--session", "racer", "--json", "claim", &path]).spawn().expect("claim");
        std::thread::sleep(Duration::from_micros(200 * (round % 10)));
        env.lanes(&repo, &["sidecar", "stop"]).success();
        let claimed = crate::common::run_of(claim.wait_with_output().expect("wait"));
        let status = env.lanes(&repo, &["--json", "status"]).success().json();
        let held = status["claims"]
            .as_array()
            .expect("claims")
            .iter()
            .any(|c| c["scopes"].as_array().is_some_and(|s| s.iter().any(|s| s == path.as_str())));
        match claimed.code {
            0 => {
                assert!(held, "round {round}: the claim was answered granted but is not held");
                outcomes.0 += 1;
            }
            _ => {
                assert!(!held, "round {round}: the claim was answered failed ({}) but is held", claimed.stdout);
                outcomes.1 += 1;
            }
        }
    }
    eprintln!("granted {} times, refused {} times", outcomes.0, outcomes.1);
}

/// Another user makes the `/tmp` runtime directory first (no XDG_RUNTIME_DIR) and listens there: no client,
/// neither the CLI nor the hook, sends it a byte, and the CLI says why.
#[test]
fn a_runtime_dir_planted_by_another_user_is_never_used() {
    if !can_act_as_another_user() {
        return;
    }
    use std::io::{BufRead, Write};
    let env = TestEnv::new();
    let repo = env.repo("r");
    for (dir, mode) in [(env.root(), 0o755), (env.root().join("tmp"), 0o1777)] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let planted =
        env.root().join(format!("tmp/lanes-{}/v{}", crate::common::current_uid(), lanes_proto::PROTOCOL_VERSION));
    let common_dir = repo.join(".git").canonicalize().expect("common dir");
    let socket = planted.join(format!("{}.sock", lanes_proto::paths::repo_key(&common_dir)));
    let script = "import os,socket,sys,time\nd=sys.argv[1]\nos.makedirs(d)\nos.chmod(d,0o777)\nos.chmod(os.path.dirname(d),0o777)\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[2])\nos.chmod(sys.argv[2],0o777)\ns.listen(16)\ns.settimeout(0.2)\nprint('ready',flush=True)\nend=time.time()+30\nwhile time.time()<end:\n    try:\n        c,_=s.accept()\n    except socket.timeout:\n        continue\n    c.settimeout(0.5)\n    try:\n        data=c.recv(65536)\n    except socket.timeout:\n        data=b''\n    print('got',len(data),flush=True)\n    if data:\n        c.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocol\":1,\"version\":\"evil\",\"pid\":1}}\\n')\n    c.close()\n";
    let mut fake = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script])
        .arg(&planted)
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .expect("fake sidecar");
    let mut lines = std::io::BufReader::new(fake.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("line").expect("read"), "ready");

    let without_runtime_dir = |mut command: std::process::Command| {
        command.env_remove("XDG_RUNTIME_DIR");
        crate::common::run_of(command.output().expect("run"))
    };
    let claim = without_runtime_dir(env.lanes_command(&repo, &["--session", "a", "--json", "claim", "src/a.rs"]));
    assert_ne!(claim.code, 0, "a claim was answered by the planted socket: {}", claim.stdout);
    assert!(claim.stdout.contains("refusing to use"), "{}", claim.stdout);

    let hook = std::path::PathBuf::from(env!("CARGO_BIN_EXE_lanes")).with_file_name("lanes-hook");
    let cwd = repo.to_string_lossy();
    for (event, input) in [
        ("SessionStart", serde_json::json!({"session_id": "s1", "cwd": cwd, "source": "startup"})),
        (
            "UserPromptSubmit",
            serde_json::json!({"session_id": "s1", "cwd": cwd, "prompt": "key sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        ),
        (
            "PreToolUse",
            serde_json::json!({"session_id": "s1", "cwd": cwd, "tool_name": "Write",
            "tool_input": {"file_path": repo.join("src/a.rs").to_string_lossy(), "content": "x"}}),
        ),
    ] {
        let mut command = std::process::Command::new(&hook);
        env.hermetic(&mut command)
            .current_dir(&repo)
            .args(["claude", event])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        command.env_remove("XDG_RUNTIME_DIR");
        let mut child = command.spawn().expect("hook");
        child.stdin.take().expect("stdin").write_all(input.to_string().as_bytes()).expect("write");
        let run = crate::common::run_of(child.wait_with_output().expect("wait"));
        assert!(!run.stdout.contains("evil"), "{event}: {}", run.stdout);
    }
    let _ = fake.kill();
    let _ = fake.wait();
    let received: Vec<String> = lines.map_while(Result::ok).filter(|l| l != "got 0").collect();
    assert!(received.is_empty(), "clients sent bytes to the planted socket: {received:?}");
}
