//! The hub's figures: a real single-member etcd and a real `lanes hub serve` on loopback.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonrpsee::core::client::ClientT;
use jsonrpsee::ws_client::WsClientBuilder;
use lanes_proto::client::Client;
use serde_json::{Value, json};

use super::{World, cpu_ticks, ms, pair, pairs_at_once, percentiles};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub fn run() {
    if Command::new("etcd").arg("--version").output().is_err() {
        println!("hub: skipped (etcd is not installed: apt-get install etcd-server)");
        return;
    }
    let dir = tempfile::Builder::new().prefix("lhb").tempdir_in("/tmp").expect("tempdir");
    let (client_port, peer_port) = (free_port(), free_port());
    let etcd_url = format!("http://127.0.0.1:{client_port}");
    let etcd = Killed(
        Command::new("etcd")
            .args(["--name", "bench", "--data-dir", &dir.path().join("etcd").to_string_lossy()])
            .args(["--listen-client-urls", &etcd_url, "--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-cluster", &format!("bench=http://127.0.0.1:{peer_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd"),
    );
    let etcd_version = Command::new("etcd").arg("--version").output().map_or_else(
        |_| "?".to_owned(),
        |o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("?").to_owned(),
    );
    println!("hub on etcd ({etcd_version}, one member on loopback, fsync on), through `lanes hub serve`");
    // A hub gives up on an etcd that does not answer within 2 s; on a busy machine etcd may start slower.
    let deadline = Instant::now() + Duration::from_secs(30);
    while etcd_writes(&etcd_url).is_none() {
        assert!(Instant::now() < deadline, "etcd did not answer on {etcd_url} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (hub, url) = start_hub(&format!("etcd:{etcd_url}"));
    at_the_hub(&url);
    let (_sqlite_hub, sqlite_url) = start_hub(&format!("sqlite:{}", dir.path().join("hub.db").display()));
    print!("  (sqlite store) ");
    at_the_hub(&sqlite_url);

    let world = World::new("full");
    world.use_hub(&[&url]);
    let socket = world.start();
    one_client_through_a_sidecar(&socket, &world);
    world.stop();

    let (_hub2, url2) = start_hub(&format!("etcd:{etcd_url}"));
    for (hubs, label) in [
        (vec![], "sidecars only, no hub"),
        (vec![url.as_str(), url2.as_str()], "through 2 etcd hubs"),
        (vec![sqlite_url.as_str()], "through the sqlite hub"),
    ] {
        // 400 pairs per agent: a run through the hubs lasts seconds, long enough to hold steady between runs.
        machines(8, 4, 400, &hubs, label, &etcd_url);
    }
    hub_restart(&etcd_url, 100_000);
    idle_machines(&url, hub.0.id(), etcd.0.id(), 300);
    hook_question_with_the_hub_down();
}

/// What `count` idle sidecars cost the hub and etcd: each asks for its session's mail every second, as a
/// sidecar does, and none has any.
fn idle_machines(url: &str, hub_pid: u32, etcd_pid: u32, count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (hub_ticks, etcd_ticks) = runtime.block_on(async {
        let clients = (0..count).map(|_| WsClientBuilder::default().build(url));
        let clients: Vec<_> =
            futures::future::join_all(clients).await.into_iter().map(|c| c.expect("connect")).collect();
        let mut used = (0, 0);
        for second in 0..4 {
            if second == 1 {
                used = (cpu_ticks(hub_pid, false), cpu_ticks(etcd_pid, false));
            }
            let next = tokio::time::Instant::now() + Duration::from_secs(1);
            let asks = clients.iter().enumerate().map(|(n, client)| {
                let params = json!({"project": "idle", "origin": format!("m{n}"), "sessions": [format!("s{n}")]});
                client.request::<Value, _>("hub.mail", object(params))
            });
            for asked in futures::future::join_all(asks).await {
                asked.expect("mail");
            }
            tokio::time::sleep_until(next).await;
        }
        (cpu_ticks(hub_pid, false) - used.0, cpu_ticks(etcd_pid, false) - used.1)
    });
    // Ticks are 1/100 s on Linux: over 3 s, three ticks are one percent of a core.
    println!(
        "  {count} idle sidecars asking for mail each second: the hub uses {:.0}% of a core, etcd {:.0}%",
        hub_ticks as f64 / 3.0,
        etcd_ticks as f64 / 3.0
    );
}

/// How many proposals etcd has committed (every write: puts, Txns, lease grants and revokes), from its
/// metrics.
fn etcd_writes(etcd_url: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let address = etcd_url.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    // HTTP/1.0: the body comes whole, not in chunks that could split a line.
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let line = text.lines().find(|l| l.starts_with("etcd_server_proposals_committed_total "))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|v| v as u64)
}

fn start_hub(store: &str) -> (Killed, String) {
    let port = free_port();
    let log_path = std::env::temp_dir().join(format!("lanes-bench-hub-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("hub log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lanes"))
        .args(["hub", "serve", "--listen", &format!("127.0.0.1:{port}"), "--store", store])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start hub");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) == 0 {
            let status = child.wait().expect("hub status");
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the hub on {store} ended before listening ({status}):\n{said}");
        }
    }
    let _ = std::fs::remove_file(&log_path);
    (Killed(child), format!("ws://127.0.0.1:{port}"))
}

/// hub.acquire then hub.release, as one sidecar sends them, over one WebSocket.
fn at_the_hub(url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let samples = runtime.block_on(async {
        let client = WsClientBuilder::default().build(url).await.expect("connect to the hub");
        let mut samples = Vec::new();
        for i in 0..600u64 {
            let claim =
                json!({"id": i + 1, "holder": "bench", "scopes": [format!("bench/{}", i % 50)], "ttl_secs": 60});
            let acquire = json!({"project": "bench", "origin": "bench-origin", "claim": claim});
            let release = json!({"project": "bench", "origin": "bench-origin", "ids": [i + 1]});
            let started = Instant::now();
            let _: Value = client.request("hub.acquire", object(acquire)).await.expect("acquire");
            let _: Value = client.request("hub.release", object(release)).await.expect("release");
            if i >= 100 {
                samples.push(started.elapsed());
            }
        }
        samples
    });
    let (p50, p99, max) = percentiles(samples);
    println!("claim+release at the hub (acquire, release):  p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// claim.acquire + claim.release on the sidecar's socket; the grant and the release each wait for the hub.
fn one_client_through_a_sidecar(socket: &std::path::Path, world: &World) {
    let mut client = Client::connect(socket, Duration::from_secs(10)).expect("connect");
    let worktree = world.repo.to_string_lossy().into_owned();
    for i in 0..100 {
        pair(&mut client, "warm", &worktree, &format!("warm/{i}"));
    }
    let samples: Vec<Duration> = (0..1000)
        .map(|i| {
            let started = Instant::now();
            pair(&mut client, "solo", &worktree, &format!("solo/{i}"));
            started.elapsed()
        })
        .collect();
    let (p50, p99, max) = percentiles(samples);
    println!("  claim+release through a sidecar, 1 client:    p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
}

/// `count` machines (a repository and sidecar each) with `agents` clients each, all claiming and releasing at
/// once; machine `m` goes through `hubs[m % hubs.len()]`.
fn machines(count: usize, agents: usize, pairs: usize, hubs: &[&str], label: &str, etcd_url: &str) {
    let worlds: Vec<World> = (0..count).map(|_| World::new("full")).collect();
    let mut targets = Vec::new();
    for (m, world) in worlds.iter().enumerate() {
        if !hubs.is_empty() {
            world.use_hub(&[hubs[m % hubs.len()]]);
        }
        let socket = world.start();
        for _ in 0..agents {
            targets.push((socket.clone(), world.repo.to_string_lossy().into_owned()));
        }
    }
    let writes_before = etcd_writes(etcd_url);
    let elapsed = pairs_at_once(targets, pairs);
    let total = count * agents * pairs;
    let writes = match (writes_before, etcd_writes(etcd_url)) {
        (Some(before), Some(after)) if label.contains("etcd") => {
            format!(", {:.2} etcd writes per pair", (after - before) as f64 / total as f64)
        }
        _ => String::new(),
    };
    println!(
        "  claim+release, {count} machines x {agents} agents, {label}: {:>6.0} pairs/s ({total} pairs in {:.2} s{writes})",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    for world in &worlds {
        world.stop();
    }
}

/// A hub started on an etcd project that holds `count` live claims: how long until its first answer (the
/// view read from etcd, and the watch set up), then how long a decision takes in it.
fn hub_restart(etcd_url: &str, count: usize) {
    let (hub, url) = start_hub(&format!("etcd:{etcd_url}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        // 32 sidecars, each on its own connection with 100 grants in flight: the hub writes them in batches.
        let origins = 32;
        let sidecars = (0..origins).map(|origin| {
            let url = url.clone();
            async move {
                let client = WsClientBuilder::default().build(&url).await.expect("connect to the hub");
                let mine: Vec<usize> = (origin..count).step_by(origins).collect();
                for chunk in mine.chunks(100) {
                    let grants = chunk.iter().map(|n| {
                        let claim = json!({"id": n / origins + 1, "holder": format!("keep{origin}"),
                            "scopes": [format!("kept/{origin}/{n}.rs")], "ttl_secs": 3600});
                        let params = json!({"project": "restart", "origin": format!("m{origin}"), "claim": claim});
                        client.request::<Value, _>("hub.acquire", object(params))
                    });
                    for granted in futures::future::join_all(grants).await {
                        granted.expect("grant");
                    }
                }
            }
        });
        futures::future::join_all(sidecars).await;
    });
    drop(hub);
    let started = Instant::now();
    let (hub, url) = start_hub(&format!("etcd:{etcd_url}"));
    let (samples, refusals) = runtime.block_on(async {
        let client = WsClientBuilder::default().build(&url).await.expect("connect to the hub");
        let probe = json!({"project": "restart", "origin": "probe", "claim":
            {"id": 1, "holder": "probe", "scopes": ["kept/0/0.rs"], "ttl_secs": 60}});
        let refused = client.request::<Value, _>("hub.acquire", object(probe)).await;
        let conflict = refused.as_ref().is_err_and(|e| e.to_string().contains("held by"));
        assert!(conflict, "the restarted hub did not refuse a held path: {refused:?}");
        println!(
            "  hub restart with {count} claims in a project (start, view read from etcd, first decision): {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let mut samples = Vec::new();
        for i in 0..500u64 {
            let claim = json!({"id": i + 1, "holder": "fresh", "scopes": [format!("fresh/{i}")], "ttl_secs": 60});
            let acquire = json!({"project": "restart", "origin": "fresh", "claim": claim});
            let started = Instant::now();
            let _: Value = client.request("hub.acquire", object(acquire)).await.expect("grant");
            samples.push(started.elapsed());
        }
        // A refusal is believed only after the claims in the way are read again: one key, not the project.
        let mut refusals = Vec::new();
        for i in 0..200u64 {
            // Claim n of the kept ones belongs to origin n % 32.
            let n = i % 32 + 32 * (i * 13 % 3000);
            let claim =
                json!({"id": 1000 + i, "holder": "probe", "scopes": [format!("kept/{}/{n}.rs", n % 32)], "ttl_secs": 60});
            let probe = json!({"project": "restart", "origin": "probe", "claim": claim});
            let started = Instant::now();
            let refused = client.request::<Value, _>("hub.acquire", object(probe)).await;
            refusals.push(started.elapsed());
            assert!(refused.is_err_and(|e| e.to_string().contains("held by")), "a held path was granted");
        }
        (samples, refusals)
    });
    let (p50, p99, max) = percentiles(samples);
    println!("  hub.acquire with {count} claims in the project:  p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
    let (p50, p99, max) = percentiles(refusals);
    println!("  refused hub.acquire with {count} claims:         p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
    web_view(&url, "restart", count);
    open_pages(&url, "restart", hub.0.id(), 10);
}

/// What `pages` pages open on one project's view cost the hub: each page's stream looks for a change every
/// 200 ms, and they share one read of the view.
fn open_pages(url: &str, project: &str, hub_pid: u32, pages: usize) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("ws://").to_owned();
    let until = Instant::now() + Duration::from_secs(4);
    let readers: Vec<_> = (0..pages)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).expect("connect to the hub");
            write!(stream, "GET /api/stream?project={project} HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("ask");
            stream.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
            std::thread::spawn(move || {
                let mut buffer = vec![0; 64 * 1024];
                while Instant::now() < until && !matches!(stream.read(&mut buffer), Ok(0)) {}
            })
        })
        .collect();
    // The first second opens the streams; the next two are measured.
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_ticks(hub_pid, false);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(hub_pid, false).saturating_sub(before);
    for reader in readers {
        reader.join().expect("reader");
    }
    // Ticks are 1/100 s on Linux: over 2 s, a tick is half a percent of a core.
    println!("  {pages} pages open on that view: the hub uses {}% of a core", used / 2);
}

/// What the web page's data costs with `count` claims in the project: `GET /api/view`, timed whole (the page's
/// stream reads the same view every 200 ms while it is open). The reads are 200 ms apart: the hub reads a view
/// afresh only after 150 ms, and gives those who ask meanwhile the one it read.
fn web_view(url: &str, project: &str, count: usize) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("ws://");
    let mut bytes = 0;
    let samples: Vec<Duration> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(200));
            let started = Instant::now();
            let mut stream = std::net::TcpStream::connect(address).expect("connect to the hub");
            write!(stream, "GET /api/view?project={project} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("ask");
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).expect("the view");
            bytes = answer.len();
            started.elapsed()
        })
        .collect();
    let (p50, p99, max) = percentiles(samples);
    let kib = bytes / 1024;
    println!(
        "  web view (GET /api/view) with {count} claims:   p50 {}  p99 {}  max {}  ({kib} KiB)",
        ms(p50),
        ms(p99),
        ms(max)
    );
}

/// What the edit hook asks (claim.ensure) with no hub, and with a hub configured that does not answer.
fn hook_question_with_the_hub_down() {
    let dead = format!("ws://127.0.0.1:{}", free_port());
    for hub in [None, Some(dead.as_str())] {
        let world = World::new("full");
        if let Some(url) = hub {
            world.use_hub(&[url]);
        }
        let socket = world.start();
        let mut client = Client::connect(&socket, Duration::from_secs(10)).expect("connect");
        let worktree = world.repo.to_string_lossy().into_owned();
        let samples: Vec<Duration> = (0..1000)
            .map(|i| {
                let started = Instant::now();
                let params = json!({"session": "hook", "worktree": worktree, "scopes": [format!("f{}", i % 20)]});
                let _ = client.call_value("claim.ensure", &params);
                started.elapsed()
            })
            .collect();
        let (p50, p99, max) = percentiles(samples);
        let label = if hub.is_some() { "hub configured but down" } else { "no hub configured" };
        println!("  edit hook's claim.ensure, {label:<24} p50 {}  p99 {}  max {}", ms(p50), ms(p99), ms(max));
        world.stop();
    }
}
