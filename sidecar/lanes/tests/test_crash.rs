use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanes_proto::client::{CallError, Client};
use serde_json::json;

use crate::common::{TestEnv, eventually, kill9, process_gone};

/// Eight clients claim paths as fast as they can (a private path each time, and paths from a shared pool
/// they contend for) while the sidecar is killed with SIGKILL and restarted, round after round. Every grant
/// a client was told about must still be there afterwards, and no two live claims may share a path.
#[test]
fn kill_nine_under_load_loses_no_granted_claim() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, _) = env.start_sidecar(&repo);
    let granted: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let worktree = repo.to_string_lossy().into_owned();
    let clients: Vec<_> = (0..8)
        .map(|agent| {
            let (socket, granted, stop, worktree) =
                (socket.clone(), Arc::clone(&granted), Arc::clone(&stop), worktree.clone());
            std::thread::spawn(move || claim_until_stopped(&socket, agent, &worktree, &granted, &stop))
        })
        .collect();

    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(40 + round * 7));
        let pid = env.sidecar_pid(&repo).expect("sidecar running");
        kill9(pid);
        assert!(eventually(Duration::from_secs(5), || process_gone(pid)));
        env.start_sidecar(&repo);
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let attempts: u64 = clients.into_iter().map(|c| c.join().expect("client thread")).sum();

    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    let live: HashMap<u64, String> = status["claims"]
        .as_array()
        .expect("claims")
        .iter()
        .map(|c| (c["id"].as_u64().expect("id"), c["scopes"][0].as_str().expect("scope").to_owned()))
        .collect();
    let granted = granted.lock().expect("lock");
    assert!(granted.len() > 20, "too few grants to mean anything: {} of {attempts}", granted.len());
    for (id, scope) in granted.iter() {
        assert_eq!(live.get(id), Some(scope), "granted claim {id} on {scope} was lost");
    }
    // A session may hold one path twice (its own claims never conflict); two sessions never may.
    let mut holders: HashMap<&str, Vec<&str>> = HashMap::new();
    for claim in status["claims"].as_array().expect("claims") {
        let path = claim["scopes"][0].as_str().expect("scope");
        let session = claim["session"].as_str().expect("session");
        let sessions = holders.entry(path).or_default();
        if !sessions.contains(&session) {
            sessions.push(session);
        }
    }
    for (path, sessions) in holders {
        assert_eq!(sessions.len(), 1, "{path} is held by several sessions: {sessions:?}");
    }
}

fn claim_until_stopped(
    socket: &Path,
    agent: u64,
    worktree: &str,
    granted: &Mutex<HashMap<u64, String>>,
    stop: &AtomicBool,
) -> u64 {
    let mut attempts = 0;
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(connection) = client.as_mut() else {
            client = Client::connect(socket, Duration::from_secs(5)).ok();
            if client.is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            continue;
        };
        attempts += 1;
        let scope =
            if attempts % 3 == 0 { format!("pool/{}", attempts % 7) } else { format!("agent{agent}/file{attempts}") };
        let params =
            json!({"session": format!("agent{agent}"), "worktree": worktree, "scopes": [scope], "ttl_secs": 3600});
        match connection.call_value("claim.acquire", &params) {
            Ok(reply) => {
                let id = reply["claim"]["id"].as_u64().expect("id");
                granted.lock().expect("lock").insert(id, scope);
            }
            Err(CallError::Refused { .. }) => {}
            Err(_) => client = None,
        }
    }
    attempts
}

#[test]
fn a_database_that_lost_its_contents_is_set_aside_and_reported_loudly() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["--session", "a", "claim", "src/a.rs"]).success();
    env.lanes(&repo, &["sidecar", "stop"]).success();
    let state = repo.join(".git/lanes");
    std::fs::File::create(state.join("state.db")).expect("truncate");
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    let lost = status["sidecar"]["data_lost"].as_str().unwrap_or_else(|| panic!("no warning: {status}")).to_owned();
    assert!(lost.contains("lost its state"), "{lost}");
    let kept: Vec<_> = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("state.db.lost-"))
        .collect();
    assert_eq!(kept.len(), 1, "the damaged file was not kept aside");
    assert!(env.lanes(&repo, &["status"]).success().stdout.contains("WARNING"));
    let doctor = env.lanes(&repo, &["--json", "doctor"]);
    assert_ne!(doctor.code, 0);
    assert!(doctor.stdout.contains("lost its state"), "{}", doctor.stdout);
}

/// The state owner's failure path with a real fault: the sidecar runs under a file size limit (`ulimit -f`,
/// SIGXFSZ ignored, so writes past it fail with EFBIG), and its write-ahead log grows up to it. The commit that fails is
/// answered `unavailable` and its batch changes nothing; the sidecar stays up and answers from the state it
/// reloaded; once restarted without the limit (after kill -9), the store holds exactly the grants it told of.
#[test]
fn a_commit_that_fails_refuses_its_batch_and_leaves_the_store_consistent() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut command = std::process::Command::new("bash");
    env.hermetic(&mut command);
    let script = r#"trap '' XFSZ; ulimit -f 200; exec "$0" sidecar run --foreground"#;
    let mut sidecar = command
        .current_dir(&repo)
        .args(["-c", script, env!("CARGO_BIN_EXE_lanes")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the sidecar under a file size limit");
    assert!(eventually(Duration::from_secs(10), || env.sidecar_pid(&repo).is_some()), "no sidecar");

    let mut granted = Vec::new();
    let mut failed = None;
    for i in 0..2000 {
        let run = env.lanes(&repo, &["--session", &format!("s{i}"), "--json", "claim", &format!("src/f{i}.rs")]);
        if run.code == 0 {
            granted.push(format!("s{i}"));
        } else {
            failed = Some((format!("s{i}"), run.json()));
            break;
        }
    }
    let (lost, refusal) = failed.expect("the file size limit was never reached");
    assert_eq!(refusal["error"]["code"], "unavailable", "{refusal}");
    assert!(refusal["error"]["message"].as_str().is_some_and(|m| m.contains("could not save")), "{refusal}");

    let holders = |env: &TestEnv| -> Vec<String> {
        let status = env.lanes(&repo, &["--json", "status"]).success().json();
        let claims = status["claims"].as_array().expect("claims").iter();
        claims.map(|c| c["session"].as_str().expect("session").to_owned()).collect()
    };
    assert_eq!(holders(&env), granted, "the reloaded state is not what was granted");
    // SQLite may start its log over after the failure, so later commits can succeed again: whatever each one
    // answers must be what the store keeps.
    let release = env.lanes(&repo, &["--session", "s0", "--json", "release", "--all"]);
    if release.code == 0 {
        granted.retain(|s| s != "s0");
    }
    assert_eq!(holders(&env), granted, "the state after the release is not what it answered: {}", release.stdout);

    kill9(sidecar.id());
    let _ = sidecar.wait();
    let after = holders(&env);
    assert_eq!(after, granted, "after a restart the store holds other claims than the ones granted");
    assert!(!after.contains(&lost));
    env.lanes(&repo, &["--session", &lost, "claim", "src/again.rs"]).success();
}
