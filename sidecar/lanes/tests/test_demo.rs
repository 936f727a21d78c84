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
    assert!(outcomes.iter().any(|o| o.contains("its uncommitted work stays claimed")), "{outcomes:#?}");
    assert!(
        outcomes
            .iter()
            .any(|o| o.starts_with("REFUSED (conflict)") && o.contains("pending work") && o.contains("erin")),
        "{outcomes:#?}"
    );
    let landed = timeline.iter().find(|e| e["action"] == "claim src/cache.rs (landed)").expect("the landed step");
    assert!(landed["outcome"].as_str().expect("outcome").starts_with("granted"), "{landed}");
    let step = |action: &str| {
        let found = timeline.iter().find(|e| e["action"] == action);
        found
            .and_then(|e| e["outcome"].as_str())
            .unwrap_or_else(|| panic!("no step {action:?}: {timeline:#?}"))
            .to_owned()
    };
    assert!(step("the queue: frank landed").starts_with("landed on main"), "{timeline:#?}");
    assert!(step("the queue: gina blocked").contains("`test ! -e BROKEN` failed"), "{timeline:#?}");
    let repo = report["repo"].as_str().expect("repo");
    assert!(!std::path::Path::new(repo).exists(), "the demo left its repository behind");
    let leftovers: Vec<_> = std::fs::read_dir(env.root().join("run/lanes/v1")).expect("runtime dir").collect();
    assert!(leftovers.is_empty(), "the demo left files in the runtime dir: {leftovers:?}");
}

#[test]
fn demo_with_a_hub_shares_claims_with_a_second_machine() {
    let env = TestEnv::new();
    let report = env.lanes(&env.root(), &["--json", "demo", "--hub"]).success().json();
    let timeline = report["timeline"].as_array().expect("timeline");
    let line = |action: &str| -> String {
        let entry = timeline.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("no {action:?}"));
        entry["outcome"].as_str().expect("outcome").to_owned()
    };
    let refused = line("claim docs/guide.md (laptop)");
    assert!(refused.starts_with("REFUSED (conflict)") && refused.contains("held by dave"), "{refused}");
    assert!(refused.contains("through the hub"), "{refused}");
    // Work that landed frees its paths at the hub too: alice on the first machine takes src/cache.rs at once.
    let landed = line("claim src/cache.rs (landed)");
    assert!(landed.contains("confirmed by the hub"), "{landed}\n{}", report["timeline"]);
    let laptop = line("claim src/metrics.rs (laptop)");
    assert!(laptop.contains("confirmed by the hub"), "{laptop}\n{}", report["timeline"]);
    assert!(line("claim src/metrics.rs").contains("held by erin"), "the laptop's claim holds on the first machine");
    let retry = line("claim docs/guide.md (retry)");
    assert!(retry.contains("confirmed by the hub"), "{retry}\n{}", report["timeline"]);
    assert!(line("claim README.md (laptop)").starts_with("REFUSED (unavailable)"));
    let leftovers: Vec<_> = std::fs::read_dir(env.root().join("run/lanes/v1")).expect("runtime dir").collect();
    assert!(leftovers.is_empty(), "the demo left files in the runtime dir: {leftovers:?}");
}

#[test]
fn the_demo_runs_on_its_own_defaults_whatever_the_user_config_says() {
    let env = TestEnv::new();
    let config = env.root().join("home/.config/lanes");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("config.toml"),
        "contention = \"worktree\"\n[binding]\nsessions = \"strict\"\n[hub]\nurls = [\"ws://127.0.0.1:9\"]\n",
    )
    .expect("write");
    let run = env.lanes(&env.root(), &["--json", "demo"]);
    assert_eq!(run.code, 0, "a global [hub] broke the demo: {} {}", run.stdout, run.stderr);
    let outcomes = run.json()["timeline"].to_string();
    assert!(outcomes.contains("held by alice"), "the demo's story changed with the user's config: {outcomes}");
}
