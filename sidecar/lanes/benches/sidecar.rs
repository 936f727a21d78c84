//! Figures for the claim engine and the sidecar, measured over the real socket on this machine:
//! overlap decision with 10,000 live claims, claim+release latency for one client, throughput with 32
//! clients, restart time with 10,000 claims, and idle memory; then the hub (DESIGN.md §9) on a real etcd
//! on loopback: claim+release at the hub and through a sidecar, 32 sidecars beside 32 without a hub, and
//! what the edit hook's question costs when the hub is down.
//! Run with `cargo bench -p lanes --bench sidecar` (`-- hub` for the hub figures only, `-- space` for the hub's
//! decision with 100,000 claims alone, `-- sidecar` without them,
//! `-- work` for what following the work costs: 20 worktrees of 10,000 files).
//! It prints figures; it asserts nothing about speed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use lanes_core::{AcquireRequest, ClaimBook, Mode, Policy, Principal, Scope, Timestamp, Worktree};
use lanes_proto::client::Client;
use serde_json::{Value, json};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "lanes benchmarks on {} ({} cores)",
        machine(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if std::env::args().any(|a| a == "space") {
        hub_decision();
        return;
    }
    if std::env::args().any(|a| a == "hub") {
        hub_decision();
        hub::run();
        return;
    }
    if std::env::args().any(|a| a == "work") {
        work::run();
        return;
    }
    overlap_decision();
    for durability in ["full", "process"] {
        let world = World::new(durability);
        println!("durability = \"{durability}\"");
        let socket = world.start();
        single_client(&socket, &world.repo);
        concurrent_clients(&socket, &world.repo, 32, 2000);
        world.stop();
    }
    let world = World::new("full");
    restart_with_claims(&world, 10_000);
    idle_memory(&world);
    world.stop();
    if !std::env::args().any(|a| a == "sidecar") {
        hub_decision();
        hub::run();
    }
}

#[path = "sidecar/hub.rs"]
mod hub;
#[path = "sidecar/work.rs"]
mod work;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cpu}, {}", std::env::consts::ARCH)
}

/// A process's CPU time so far, in clock ticks (1/100 s on Linux): user and system, and with `children` its
/// waited-for children's too.
fn cpu_ticks(pid: u32, children: bool) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name (which may hold spaces).
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    fields[11..if children { 15 } else { 13 }].iter().map(|f| f.parse::<u64>().unwrap_or(0)).sum()
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The decision `claim.check` and `claim.acquire` make, on a book of 10,000 live claims (paths in a deep
/// tree plus 100 globs), for 10,000 random paths.
fn overlap_decision() {
    let mut book = ClaimBook::new(Policy::default());
    let now = Timestamp(1_000_000);
    let worktree = Worktree { root: "/repo".into(), git_dir: "/repo/.git".into() };
    for i in 0..10_000u64 {
        let scope =
            if i % 100 == 0 { format!("docs{i}/**/*.md") } else { format!("dir{}/sub{}/file{i}.rs", i % 97, i % 31) };
        let request = AcquireRequest {
            holder: Principal { session: format!("s{i}"), agent: None },
            worktree: worktree.clone(),
            scopes: vec![Scope::parse(&scope).expect("valid")],
            mode: Mode::Exclusive,
            ttl: Some(Duration::from_secs(3600)),
            note: None,
            task: None,
        };
        book.acquire(request, now).expect("no conflicts in this layout");
    }
    let asker = Principal { session: "asker".into(), agent: None };
    let mut samples = Vec::with_capacity(10_000);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let path = format!("dir{}/sub{}/file{}.rs", seed % 97, (seed >> 8) % 31, (seed >> 16) % 12_000);
        let scopes = [Scope::parse(&path).expect("valid")];
        let started = Instant::now();
        std::hint::black_box(book.holders(&asker, &worktree, &scopes, now));
        samples.push(started.elapsed());
    }
    let (p50, p99, max) = percentiles(samples);
    println!("overlap decision, 10,000 live claims:      p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

/// The hub's decision (its project's claim space, the lanes-core overlap index) with 100,000 live claims of
/// many sidecars: the conflict check a grant makes before it writes.
fn hub_decision() {
    use lanes_hub::space::{Held, Space};
    use lanes_proto::hub::HubClaim;
    let mut space = Space::default();
    let claim = |id: u64, holder: String, scope: String| HubClaim {
        id,
        holder,
        scopes: vec![scope],
        mode: lanes_proto::Mode::Exclusive,
        ttl_secs: 3600,
    };
    let started = Instant::now();
    for i in 0..100_000u64 {
        let scope =
            if i % 100 == 0 { format!("docs{i}/**/*.md") } else { format!("dir{}/sub{}/file{i}.rs", i % 97, i % 31) };
        let held = Held {
            origin: format!("m{}", i % 32),
            claim: claim(i, format!("s{i}"), scope),
            epoch: i + 1,
            expires_at_ms: 4_000_000_000_000,
            lease: 0,
        };
        space.insert(held);
    }
    let loaded = started.elapsed();
    let mut samples = Vec::with_capacity(10_000);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 0..10_000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let path = format!("dir{}/sub{}/file{}.rs", seed % 97, (seed >> 8) % 31, (seed >> 16) % 120_000);
        let wanted = claim(1_000_000 + n, "asker".into(), path);
        let started = Instant::now();
        std::hint::black_box(space.conflicts("asker-machine", &wanted, 1).expect("valid"));
        samples.push(started.elapsed());
    }
    let (p50, p99, max) = percentiles(samples);
    println!(
        "hub decision, 100,000 live claims of 32 sidecars: p50 {}  p99 {}  max {}  (loading the view: {} ms)",
        ms(p50),
        ms(p99),
        ms(max),
        loaded.as_millis()
    );
    // What a hub.release looks up first (the claims it names), and a hub.sync (all the sidecar's, 3,125 here).
    let lookups = |look: &dyn Fn(u64)| {
        let samples: Vec<Duration> = (0..1_000u64)
            .map(|n| {
                let started = Instant::now();
                look(n);
                started.elapsed()
            })
            .collect();
        percentiles(samples)
    };
    let (p50, p99, max) = lookups(&|n| {
        std::hint::black_box(space.among(&format!("m{}", n % 32), &[n * 97 % 100_000]));
    });
    println!("  a release's lookup of its claim:         p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
    let (p50, p99, max) = lookups(&|n| {
        std::hint::black_box(space.of_origin(&format!("m{}", n % 32)));
    });
    println!("  a sync's lookup of its sidecar's 3,125:  p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

fn call(client: &mut Client, method: &str, params: &Value) -> Value {
    client.call_value(method, params).unwrap_or_else(|e| panic!("{method} failed: {e}"))
}

fn pair(client: &mut Client, session: &str, worktree: &str, path: &str) {
    let grant = call(client, "claim.acquire", &json!({"session": session, "worktree": worktree, "scopes": [path]}));
    let id = grant["claim"]["id"].as_u64().expect("id");
    call(client, "claim.release", &json!({"session": session, "claims": [id]}));
}

fn single_client(socket: &Path, repo: &Path) {
    let mut client = Client::connect(socket, Duration::from_secs(10)).expect("connect");
    let worktree = repo.to_string_lossy();
    for i in 0..200 {
        pair(&mut client, "warm", &worktree, &format!("warm/{i}"));
    }
    let samples: Vec<Duration> = (0..3000)
        .map(|i| {
            let started = Instant::now();
            pair(&mut client, "solo", &worktree, &format!("solo/{}", i % 50));
            started.elapsed()
        })
        .collect();
    let (p50, p99, max) = percentiles(samples);
    println!("  claim+release, 1 client, real socket:     p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

fn concurrent_clients(socket: &Path, repo: &Path, clients: usize, pairs: usize) {
    let targets = vec![(socket.to_path_buf(), repo.to_string_lossy().into_owned()); clients];
    let elapsed = pairs_at_once(targets, pairs);
    let total = clients * pairs;
    println!(
        "  claim+release, {clients} clients, real socket:    {:.0} pairs/s ({total} pairs in {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

/// One client per `(socket, worktree)`, all starting together, each making `pairs` claim+release pairs on
/// paths of its own; returns how long they took.
fn pairs_at_once(targets: Vec<(PathBuf, String)>, pairs: usize) -> Duration {
    let barrier = Arc::new(Barrier::new(targets.len() + 1));
    let handles: Vec<_> = targets
        .into_iter()
        .enumerate()
        .map(|(c, (socket, worktree))| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket, Duration::from_secs(30)).expect("connect");
                barrier.wait();
                for i in 0..pairs {
                    pair(&mut client, &format!("agent{c}"), &worktree, &format!("agent{c}/{}", i % 20));
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for handle in handles {
        handle.join().expect("client");
    }
    started.elapsed()
}

fn restart_with_claims(world: &World, count: usize) {
    let socket = world.start();
    let worktree = world.repo.to_string_lossy().into_owned();
    let clients = 8;
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (socket, worktree) = (socket.clone(), worktree.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket, Duration::from_secs(30)).expect("connect");
                for i in (c..count).step_by(clients) {
                    call(&mut client, "claim.acquire", &json!({"session": format!("keep{c}"), "worktree": worktree, "scopes": [format!("kept/{i}.rs")], "ttl_secs": 3600}));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("client");
    }
    world.stop();
    let started = Instant::now();
    let socket = world.start();
    let ready = started.elapsed();
    let mut client = Client::connect(&socket, Duration::from_secs(10)).expect("connect");
    let live = call(&mut client, "status", &json!({}))["claims"].as_array().map_or(0, Vec::len);
    println!("restart with {live} claims (spawn to first answer):  {}", ms(ready));
    println!("sidecar RSS with {live} live claims:              {:.1} MB", rss_mb(world.pid()));
    call(&mut client, "claim.release", &json!({"session": "keep0", "all": true}));
    for c in 0..clients {
        call(&mut client, "claim.release", &json!({"session": format!("keep{c}"), "all": true}));
    }
}

fn idle_memory(world: &World) {
    world.stop();
    world.start();
    std::thread::sleep(Duration::from_millis(300));
    println!("idle sidecar RSS (fresh start, no claims):  {:.1} MB", rss_mb(world.pid()));
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// A throwaway repository with its own runtime dir, and the release-built `lanes` to drive it.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    durability: &'static str,
}

impl World {
    fn new(durability: &'static str) -> World {
        let dir = tempfile::Builder::new().prefix("lb").tempdir_in("/tmp").expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let repo = root.join("repo");
        std::fs::create_dir_all(root.join("run")).expect("mkdir");
        std::fs::create_dir_all(&repo).expect("mkdir");
        let world = World { _dir: dir, root, repo, durability };
        world.command("git").args(["init", "-q", "-b", "main"]).status().expect("git init");
        world
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.repo)
            .env("XDG_RUNTIME_DIR", self.root.join("run"))
            .env("HOME", &self.root)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LANES_IDLE_TIMEOUT", "10m")
            .env("LANES_DURABILITY", self.durability)
            .stdin(Stdio::null());
        command
    }

    fn lanes(&self, args: &[&str]) -> Value {
        let output = self.command(env!("CARGO_BIN_EXE_lanes")).args(args).output().expect("run lanes");
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    fn start(&self) -> PathBuf {
        let status = self.lanes(&["--json", "sidecar", "start"]);
        PathBuf::from(status["socket"].as_str().expect("sidecar started"))
    }

    fn pid(&self) -> u32 {
        self.lanes(&["--json", "sidecar", "status"])["pid"].as_u64().unwrap_or(0) as u32
    }

    fn stop(&self) {
        self.lanes(&["--json", "sidecar", "stop"]);
    }

    /// Points the sidecar at hubs (before it starts).
    fn use_hub(&self, urls: &[&str]) {
        let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        std::fs::create_dir_all(self.repo.join(".git/lanes")).expect("mkdir");
        let config = format!("[hub]\nurls = [{}]\nproject = \"bench\"\n", urls.join(", "));
        std::fs::write(self.repo.join(".git/lanes/config.toml"), config).expect("config");
    }
}
