use std::io::Write;
use std::sync::{Arc, Barrier};

use lanes_proto::MAX_LINE_BYTES;
use serde_json::json;

use crate::common::{TestEnv, Wire};

#[test]
fn malformed_requests_get_json_rpc_errors_and_the_sidecar_stays_up() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    let mut wire = Wire::connect(&socket);

    wire.send_raw(b"this is not json\n");
    assert_eq!(wire.read()["error"]["code"], -32700);
    wire.send_raw(b"[1, 2]\n");
    assert_eq!(wire.read()["error"]["code"], -32600);
    wire.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"no.such.method\",\"params\":{}}\n");
    let unknown = wire.read();
    assert_eq!(unknown["error"]["code"], -32601);
    assert_eq!(unknown["id"], 7);
    wire.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"claim.acquire\",\"params\":{\"session\":5}}\n");
    let bad_params = wire.read();
    assert_eq!(bad_params["error"]["data"]["code"], "invalid_argument");
    assert_eq!(bad_params["error"]["data"]["protocol"], 1);
    wire.send_raw(b"\xff\xfe\n");
    assert_eq!(wire.read()["error"]["code"], -32700);
    let outside = wire.call("claim.acquire", json!({"session": "s", "worktree": "/", "scopes": ["x"]}));
    assert_eq!(outside["error"]["data"]["code"], "invalid_argument", "{outside}");

    // Every success reply carries the protocol version.
    let hello = wire.call("hello", json!({"client": "test", "version": "0", "protocol": 1}));
    assert_eq!(hello["result"]["protocol"], 1);
    assert_eq!(hello["result"]["pid"], pid);
    assert_eq!(env.sidecar_pid(&repo), Some(pid));
}

#[test]
fn oversized_lines_are_refused_with_a_clear_limit() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    let mut wire = Wire::connect(&socket);
    let mut huge = vec![b'x'; MAX_LINE_BYTES + 10];
    huge.push(b'\n');
    wire.send_raw(&huge);
    let reply = wire.read();
    assert_eq!(reply["error"]["code"], -32600);
    assert!(reply["error"]["message"].as_str().expect("message").contains("limit"));
    let mut fresh = Wire::connect(&socket);
    assert!(fresh.call("status", json!({}))["result"]["claims"].is_array());
    assert_eq!(env.sidecar_pid(&repo), Some(pid));
}

#[test]
fn a_client_that_disconnects_mid_request_changes_nothing() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    for _ in 0..20 {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        stream.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"claim.acq").expect("write");
    }
    let mut wire = Wire::connect(&socket);
    assert_eq!(wire.call("status", json!({}))["result"]["claims"], json!([]));
    assert_eq!(env.sidecar_pid(&repo), Some(pid));
}

#[test]
fn sixty_four_clients_racing_for_one_scope_get_exactly_one_winner() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, _) = env.start_sidecar(&repo);
    let barrier = Arc::new(Barrier::new(64));
    let worktree = repo.to_string_lossy().into_owned();
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (socket, barrier, worktree) = (socket.clone(), Arc::clone(&barrier), worktree.clone());
            std::thread::spawn(move || {
                let mut wire = Wire::connect(&socket);
                barrier.wait();
                wire.call(
                    "claim.acquire",
                    json!({"session": format!("agent{i}"), "worktree": worktree, "scopes": ["src/a.rs"]}),
                )
            })
        })
        .collect();
    let replies: Vec<serde_json::Value> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
    let winners = replies.iter().filter(|r| r.get("result").is_some()).count();
    assert_eq!(winners, 1);
    for loser in replies.iter().filter(|r| r.get("result").is_none()) {
        assert_eq!(loser["error"]["data"]["code"], "conflict", "a loser failed otherwise: {loser}");
    }
    let status = env.lanes(&repo, &["--json", "status"]).success().json();
    assert_eq!(status["claims"].as_array().expect("claims").len(), 1);
}

/// Random lines (garbage, truncated JSON, valid requests with wrong params) each get a well-formed JSON-RPC
/// reply or none (blank lines, notifications), and the sidecar stays up throughout.
#[test]
fn random_request_lines_get_well_formed_replies() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    let line = prop_oneof![
        "[^\n]{0,200}",
        Just("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"claim.acquire\",\"params\":".to_owned()),
        ("[a-z.]{1,20}", "[^\n\"]{0,40}").prop_map(|(m, p)| format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"{m}\",\"params\":{{\"session\":\"{p}\",\"worktree\":\"/\",\"scopes\":[\"{p}\"]}}}}"
        )),
    ];
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    runner
        .run(&line, |line| {
            let mut wire = Wire::connect(&socket);
            wire.send_raw(format!("{line}\n").as_bytes());
            let parsed: Option<serde_json::Value> = serde_json::from_str(line.trim()).ok();
            let silent =
                line.trim().is_empty() || parsed.as_ref().is_some_and(|v| v.is_object() && v.get("id").is_none());
            if !silent {
                let reply = wire.read();
                prop_assert_eq!(&reply["jsonrpc"], "2.0");
                prop_assert!(reply.get("result").is_some() || reply["error"]["code"].is_i64(), "{}", reply);
            }
            Ok(())
        })
        .expect("every line gets a well-formed reply");
    assert_eq!(env.sidecar_pid(&repo), Some(pid), "the sidecar restarted");
}

/// Every method of the contract, with random params: a well-formed reply each time, and the sidecar stays up.
#[test]
fn every_method_with_random_params_gets_a_well_formed_reply() {
    use lanes_proto::method as m;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    let methods = vec![
        m::HELLO,
        m::CLAIM_ACQUIRE,
        m::CLAIM_RELEASE,
        m::CLAIM_RENEW,
        m::CLAIM_CHECK,
        m::CLAIM_WAIT,
        m::CLAIM_ENSURE,
        m::SESSION_ACTIVITY,
        m::MESSAGE_SEND,
        m::MESSAGE_INBOX,
        m::CLAIM_HANDOFF,
        m::SESSION_START,
        m::SESSION_END,
        m::CHECKPOINT_CREATE,
        m::CHECKPOINT_LIST,
        m::CHECKPOINT_REWIND,
        m::COMMIT_STAMP,
        m::COMMIT_RECORD,
        m::COMMIT_EXPLAIN,
        m::TASK_ADD,
        m::TASK_LIST,
        m::TASK_NEXT,
        m::TASK_DONE,
        m::TASK_CHANGE,
        m::WORKTREE_SCAN,
        m::COMMIT_CHECK,
        m::WORKTREE_CREATE,
        m::WORKTREE_FINISH,
        m::STATUS,
        m::EVENTS,
    ];
    let request = (prop::sample::select(methods), crate::common::arbitrary_params());
    let wire = std::cell::RefCell::new(Wire::connect(&socket));
    let mut runner = TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
    runner
        .run(&request, |(method, params)| {
            let reply = wire.borrow_mut().call(method, params.clone());
            prop_assert_eq!(&reply["jsonrpc"], "2.0");
            let well_formed = reply["result"]["protocol"].is_u64()
                || (reply["error"]["code"].is_i64()
                    && reply["error"]["message"].is_string()
                    && reply["error"]["data"]["protocol"].is_u64());
            prop_assert!(well_formed, "{} {} -> {}", method, params, reply);
            Ok(())
        })
        .expect("every method answers random params with a well-formed reply");
    assert_eq!(env.sidecar_pid(&repo), Some(pid), "the sidecar restarted");
    let status = env.lanes(&repo, &["status", "--json"]).success().json();
    assert!(status["claims"].is_array(), "the sidecar still answers: {status}");
}

#[test]
fn thousands_of_idle_connections_do_not_take_the_sidecar_down() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, pid) = env.start_sidecar(&repo);
    let idle: Vec<std::os::unix::net::UnixStream> =
        (0..3000).filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok()).collect();
    assert!(idle.len() > 1000, "only {} connections could be opened", idle.len());
    let mut wire = Wire::connect(&socket);
    let reply = wire.call("claim.acquire", json!({"session": "busy", "worktree": repo, "scopes": ["src/a.rs"]}));
    assert!(reply.get("result").is_some(), "{reply}");
    drop(idle);
    let mut fresh = Wire::connect(&socket);
    assert_eq!(fresh.call("status", json!({}))["result"]["claims"].as_array().map(Vec::len), Some(1));
    assert_eq!(env.sidecar_pid(&repo), Some(pid));
}

#[test]
fn unknown_methods_carry_the_protocol_and_a_huge_cursor_does_not_replay_the_log() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let (socket, _) = env.start_sidecar(&repo);
    let mut wire = Wire::connect(&socket);
    let unknown = wire.call("no.such.method", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    assert!(unknown["error"]["data"]["protocol"].is_u64(), "{unknown}");
    wire.call("claim.acquire", json!({"session": "a", "worktree": repo, "scopes": ["src/a.rs"]}));
    let replay = wire.call("events", json!({"since": 1u64 << 63}));
    assert_eq!(replay["result"]["events"], json!([]), "a cursor past i64::MAX replayed the log: {replay}");
}
