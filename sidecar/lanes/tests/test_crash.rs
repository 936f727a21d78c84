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
