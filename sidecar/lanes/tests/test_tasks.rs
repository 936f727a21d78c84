use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestEnv, Wire, eventually};

#[test]
fn board_orders_work_and_next_claims_atomically() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let schema = env.lanes(&repo, &["--json", "task", "add", "design the schema", "--scope", "docs"]).success().json();
    assert_eq!(schema["task"]["status"], "open");
    let id = schema["task"]["id"].to_string();
    let api = env
        .lanes(&repo, &["--json", "task", "add", "write the API", "--after", &id, "--scope", "src"])
        .success()
        .json();
    let api_id = api["task"]["id"].as_u64().expect("id");
    assert_eq!(api["task"]["after"], json!([1]));
    let cycle = env.lanes(&repo, &["--json", "task", "add", "chase my tail", "--after", &(api_id + 1).to_string()]);
    assert_eq!(cycle.code, 3);
    assert_eq!(cycle.json()["error"]["code"], "cycle");
    assert_eq!(env.lanes(&repo, &["--json", "task", "add", "x", "--after", "77"]).json()["error"]["code"], "not_found");

    let ready = env.lanes(&repo, &["--json", "task", "list", "--ready"]).success().json();
    assert_eq!(ready["tasks"].as_array().expect("tasks").len(), 1);
    let taken = env.lanes(&repo, &["--session", "a", "--json", "task", "next"]).success().json();
    assert_eq!(taken["task"]["id"], 1);
    assert_eq!(taken["task"]["holder"], "a");
    assert_eq!(taken["claim"]["scopes"], json!(["docs"]));
    let none = env.lanes(&repo, &["--session", "b", "--json", "task", "next"]);
    assert_eq!(none.code, 3);
    assert_eq!(none.json()["error"]["code"], "not_found");
    assert_eq!(
        env.lanes(&repo, &["--session", "b", "--json", "task", "done", "1"]).json()["error"]["code"],
        "not_holder"
    );
    env.lanes(&repo, &["--session", "a", "task", "done", "1"]).success();
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert!(status["claims"].as_array().expect("claims").is_empty(), "done releases the task's claim");
    assert_eq!(status["tasks"][1]["status"], "ready");
    let shown = env.lanes(&repo, &["--json", "task", "show", &api_id.to_string()]).success().json();
    assert_eq!(shown["task"]["title"], "write the API");
}

#[test]
fn a_lapsed_task_claim_puts_the_task_back_on_the_board() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.lanes(&repo, &["task", "add", "refactor", "--scope", "src"]).success();
    let taken = env.lanes(&repo, &["--session", "a", "--json", "task", "next"]).success().json();
    let claim = taken["claim"]["id"].to_string();
    // The holder lets the claim lapse.
    env.lanes(&repo, &["--session", "a", "renew", &claim, "--ttl", "1s"]).success();
    let mut again = Value::Null;
    let back_on_the_board = || {
        again = env.lanes(&repo, &["--session", "b", "--json", "task", "next"]).json();
        again["task"]["id"] == 1
    };
    assert!(eventually(Duration::from_secs(20), back_on_the_board), "the lapsed task stayed taken: {again}");
    assert_eq!(again["task"]["holder"], "b");
}

#[test]
fn sixty_four_racing_agents_each_get_a_different_task() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    for i in 0..32 {
        env.lanes(&repo, &["task", "add", &format!("task {i}"), "--scope", &format!("area{i}")]).success();
    }
    let (socket, _) = env.start_sidecar(&repo);
    let barrier = Arc::new(Barrier::new(64));
    let worktree = repo.to_string_lossy().into_owned();
    let handles: Vec<_> = (0..64)
        .map(|agent| {
            let (socket, barrier, worktree) = (socket.clone(), Arc::clone(&barrier), worktree.clone());
            std::thread::spawn(move || {
                let mut wire = Wire::connect(&socket);
                barrier.wait();
                let reply = wire.call("task.next", json!({"session": format!("agent{agent}"), "worktree": worktree}));
                reply["result"]["task"]["id"].as_u64()
            })
        })
        .collect();
    let mut taken: Vec<u64> = handles.into_iter().filter_map(|h| h.join().expect("agent")).collect();
    assert_eq!(taken.len(), 32, "every task is taken, and 32 agents find none left");
    taken.sort_unstable();
    taken.dedup();
    assert_eq!(taken.len(), 32, "a task went to two agents");
}

#[test]
fn a_stalled_task_is_flagged_then_offered_to_others_with_its_note() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut start = env.lanes_command(&repo, &["sidecar", "start"]);
    start.env("LANES_STALL_FLAG_AFTER", "1s").env("LANES_STALL_OFFER_AFTER", "3s");
    assert!(start.status().expect("start").success());
    env.lanes(&repo, &["task", "add", "slow work", "--scope", "src"]).success();
    env.lanes(&repo, &["--session", "idle", "--json", "task", "next"]).success();
    let flagged = crate::common::eventually(std::time::Duration::from_secs(10), || {
        env.lanes(&repo, &["--json", "task", "list"]).json()["tasks"][0]["status"] == "stalled"
    });
    assert!(flagged, "the idle task was not flagged");
    let offered = crate::common::eventually(std::time::Duration::from_secs(10), || {
        env.lanes(&repo, &["--json", "task", "list"]).json()["tasks"][0]["status"] == "ready"
    });
    assert!(offered, "the stalled task was not offered to others");
    let taken = env.lanes(&repo, &["--session", "fresh", "--json", "task", "next"]).success().json();
    assert!(taken["task"]["note"].as_str().expect("note").contains("stalled under idle"), "{taken}");
    let told = env.lanes(&repo, &["--session", "idle", "--json", "inbox"]).success().json();
    let texts: Vec<&str> =
        told["messages"].as_array().expect("messages").iter().filter_map(|m| m["text"].as_str()).collect();
    assert!(texts.iter().any(|t| t.contains("no progress")), "{texts:?}");
}

#[test]
fn a_task_can_be_given_back_edited_and_dropped_and_next_names_who_is_in_the_way() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let add = |args: &[&str]| {
        let mut full = vec!["--session", "lead", "--json", "task", "add"];
        full.extend_from_slice(args);
        env.lanes(&repo, &full).success().json()["task"]["id"].as_u64().expect("id")
    };
    let first = add(&["write the API", "--scope", "src/a.rs"]);
    let second = add(&["document it", "--after", &first.to_string(), "--scope", "docs"]);
    env.lanes(&repo, &["--session", "other", "claim", "src/a.rs"]).success();
    let blocked = env.lanes(&repo, &["--session", "worker", "--json", "task", "next"]);
    assert_eq!(blocked.code, 3, "{}", blocked.stdout);
    assert!(blocked.stdout.contains("other"), "task next does not name who holds the files: {}", blocked.stdout);
    env.lanes(&repo, &["--session", "other", "release", "--all"]).success();

    let taken = env.lanes(&repo, &["--session", "worker", "--json", "task", "next"]).success().json();
    assert_eq!(taken["task"]["id"], first);
    let back = env.lanes(
        &repo,
        &["--session", "worker", "--json", "task", "give-back", &first.to_string(), "--note", "half done"],
    );
    let back = back.success().json();
    assert_eq!(back["task"]["status"], "open", "{back}");
    assert_eq!(back["task"]["note"], "half done");
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert!(status["claims"].as_array().expect("claims").is_empty(), "giving back did not release the claim");

    let edited = env.lanes(
        &repo,
        &["--json", "task", "edit", &first.to_string(), "--title", "write the API, tested", "--scope", "src"],
    );
    let edited = edited.success().json();
    assert_eq!(edited["task"]["title"], "write the API, tested");
    assert_eq!(edited["task"]["scopes"], serde_json::json!(["src"]));

    let refused = env.lanes(&repo, &["--json", "task", "drop", &first.to_string()]);
    assert_eq!(refused.code, 2, "a task others wait for was dropped: {}", refused.stdout);
    assert!(refused.stdout.contains(&format!("task {second}")), "{}", refused.stdout);
    env.lanes(&repo, &["task", "drop", &second.to_string()]).success();
    env.lanes(&repo, &["task", "drop", &first.to_string()]).success();
    let ready = env.lanes(&repo, &["--json", "task", "list", "--ready"]).success().json();
    assert!(ready["tasks"].as_array().expect("tasks").is_empty(), "{ready}");
}
