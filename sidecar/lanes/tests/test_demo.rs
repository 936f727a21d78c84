use crate::common::TestEnv;

#[test]
fn demo_runs_collides_hands_off_and_cleans_up() {
    let env = TestEnv::new();
    let run = env.lanes(&env.root(), &["--json", "demo"]).success();
    let report = run.json();
    let timeline = report["timeline"].as_array().expect("timeline");
    let outcomes: Vec<&str> = timeline.iter().map(|e| e["outcome"].as_str().expect("outcome")).collect();
    assert!(
        outcomes.iter().any(|o| o.starts_with("REFUSED (conflict)") && o.contains("held by alice")),
        "{outcomes:#?}"
    );
    assert!(outcomes.iter().any(|o| o.contains("now held by carol")), "{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o.contains("note from carol")), "{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o.contains("trailers: Lanes-Session: bob, Lanes-Checkpoint: ")), "{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o.starts_with("did: modify src/api.rs")), "{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o.starts_with("took task 2")), "{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o == &"waiting for bob"), "{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o.contains("from alice: \"the db index is in")), "{outcomes:#?}");
    let repo = report["repo"].as_str().expect("repo");
    assert!(!std::path::Path::new(repo).exists(), "the demo left its repository behind");
    let leftovers: Vec<_> = std::fs::read_dir(env.root().join("run/lanes/v1")).expect("runtime dir").collect();
    assert!(leftovers.is_empty(), "the demo left files in the runtime dir: {leftovers:?}");
}
