#!/usr/bin/env python3
"""Claim+release pairs through the hub beside the same machines without one, over the wire contract.

Eight "machines" (each its own HOME, runtime dir, clone and sidecar) with four agents each; every agent claims
a path of its own and releases it again, as fast as it can, for a fixed time. Run once with no hub, then with
machines split over two `lanes hub serve` on one real etcd member (fsync on), then one agent alone through the
hub for the single-pair latency. Each agent is its own process (no GIL between agents), speaking JSON-RPC over
its machine's Unix socket. Prints pairs/s, p50/p99 per pair and etcd's committed writes per pair, then the CPU
time one pair took in each kind of process (agents, sidecars, hubs, etcd) and the machine's context switches
per pair: with every core busy, pairs/s is the cores divided by the CPU a pair takes. Last, what the same
machines cost etcd and the hubs while idle.

Usage: tests/bench/hub_pairs.py [SECONDS] [BIN_DIR]   (default 10 s per run; $CARGO_TARGET_DIR/release).
Needs etcd (Debian package etcd-server).
"""
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from kill9_hub import Etcd, Hub

MACHINES = 8
AGENTS_PER_MACHINE = 4


def call(stream, n, method, params):
    stream.write((json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}) + "\n").encode())
    stream.flush()
    reply = json.loads(stream.readline())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def agent(sock_path, session, worktree, start_at, seconds, results):
    """Claim+release pairs from `start_at` for `seconds`; puts the list of pair times (s) on `results`."""
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(sock_path)
    stream = conn.makefile("rwb")
    times, n = [], 0
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    while time.time() < deadline:
        began = time.perf_counter()
        n += 1
        grant = call(stream, n, "claim.acquire", {"session": session, "worktree": worktree,
                                                  "scopes": [f"{session}/f{n % 20}"]})
        call(stream, n, "claim.release", {"session": session, "claims": [grant["claim"]["id"]]})
        times.append(time.perf_counter() - began)
    results.put(times)


def etcd_counts(etcd):
    """etcd's committed writes (Txns, puts, lease grants: each one raft proposal) and the keys they put."""
    counts = {"writes": 0.0, "puts": 0.0}
    with urllib.request.urlopen(f"http://127.0.0.1:{etcd.ports[0][0]}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_server_proposals_committed_total "):
                counts["writes"] = float(line.split()[1])
            elif line.startswith("etcd_mvcc_put_total "):
                counts["puts"] = float(line.split()[1])
    return counts


def cpu_seconds(pids):
    """User + system CPU time of `pids` so far (a process that has ended counts nothing)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def context_switches():
    with open("/proc/stat") as f:
        return int(f.read().split("\nctxt ")[1].split()[0])


def machines(lanes, root, label, count, hub_urls):
    """Starts `count` clones with a sidecar each; machine m uses hub_urls[m % len] (none: no hub)."""
    upstream = os.path.join(root, "upstream")
    if not os.path.exists(upstream):
        subprocess.run(["git", "init", "-q", upstream], check=True, env=git_env(root))
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=upstream, check=True,
                       env=git_env(root))
    started = []
    for m in range(count):
        home = os.path.join(root, f"{label.replace(' ', '-')}-home{m}")
        os.makedirs(os.path.join(home, "run"), mode=0o700)
        env = dict(git_env(home), XDG_RUNTIME_DIR=os.path.join(home, "run"))
        repo = os.path.join(home, "repo")
        subprocess.run(["git", "clone", "-q", upstream, repo], check=True, env=env)
        if hub_urls:
            os.makedirs(os.path.join(repo, ".git", "lanes"), exist_ok=True)
            with open(os.path.join(repo, ".git", "lanes", "config.toml"), "w") as f:
                f.write(f"[hub]\nurls = {json.dumps([hub_urls[m % len(hub_urls)]])}\nproject = \"bench\"\n")
        status = json.loads(subprocess.run([lanes, "--json", "sidecar", "start"], cwd=repo, env=env,
                                           capture_output=True, check=True).stdout)
        started.append((repo, status["socket"], env, status["pid"]))
    return started


def stop(lanes, started):
    """Stops the sidecars `machines` started."""
    for repo, _, env, _ in started:
        subprocess.run([lanes, "sidecar", "stop"], cwd=repo, env=env, capture_output=True)


def git_env(home):
    return dict(os.environ, HOME=home, GIT_CONFIG_GLOBAL="/dev/null", GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b",
                GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")


def run(lanes, root, label, hubs, seconds, count, agents_per_machine, etcd):
    started = machines(lanes, root, label, count, [hub.url for hub in hubs])
    results = multiprocessing.Queue()
    start_at = time.time() + 2.0
    processes = [multiprocessing.Process(target=agent, args=(sock, f"m{m}a{a}", repo, start_at, seconds, results))
                 for m, (repo, sock, _, _) in enumerate(started) for a in range(agents_per_machine)]
    for p in processes:
        p.start()
    kinds = {"agents": [p.pid for p in processes], "sidecars": [pid for *_, pid in started],
             "hubs": [hub.process.pid for hub in hubs], "etcd": [member.pid for member in etcd.members]}
    counts_before = etcd_counts(etcd)
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = {kind: cpu_seconds(pids) for kind, pids in kinds.items()}
    switches_before = context_switches()
    time.sleep(max(0.0, start_at + seconds - time.time()))
    cpu = {kind: cpu_seconds(pids) - cpu_before[kind] for kind, pids in kinds.items()}
    switches = context_switches() - switches_before
    times = [t for _ in processes for t in results.get(timeout=seconds + 60)]
    counts = etcd_counts(etcd)
    writes, puts = (counts[kind] - counts_before[kind] for kind in ("writes", "puts"))
    for p in processes:
        p.join()
    stop(lanes, started)
    times.sort()
    agents = len(processes)
    p99 = times[int(len(times) * 0.99)] if times else 0
    per_pair = f", {writes / len(times):.2f} etcd writes and {puts / len(times):.1f} keys put per pair" if hubs else ""
    print(f"  {label:<30} {len(times) / seconds:>7.0f} pairs/s  p50 {statistics.median(times) * 1000:6.2f} ms  "
          f"p99 {p99 * 1000:6.2f} ms  ({agents} agents, {len(times)} pairs in {seconds} s{per_pair})")
    if times:
        each = ", ".join(f"{kind} {spent / len(times) * 1e6:.0f}" for kind, spent in cpu.items() if kinds[kind])
        print(f"  {'':<30} CPU per pair (µs): {each}, all {sum(cpu.values()) / len(times) * 1e6:.0f} "
              f"of {os.cpu_count() * seconds / len(times) * 1e6:.0f} the cores had; "
              f"{switches / len(times):.1f} context switches per pair")


def idle(lanes, root, hubs, seconds, etcd):
    """What machines cost the hub and etcd while nobody claims: each holds a claim and talks to its hub."""
    started = machines(lanes, root, "idle", MACHINES, [hub.url for hub in hubs])
    for repo, _, env, _ in started:
        subprocess.run([lanes, "--session", "idle", "claim", "held"], cwd=repo, env=env, check=True,
                       capture_output=True)
    time.sleep(3)
    members, hub_pids = [member.pid for member in etcd.members], [hub.process.pid for hub in hubs]
    writes, etcd_cpu, hub_cpu = etcd_counts(etcd)["writes"], cpu_seconds(members), cpu_seconds(hub_pids)
    time.sleep(seconds)
    writes, etcd_cpu = etcd_counts(etcd)["writes"] - writes, cpu_seconds(members) - etcd_cpu
    hub_cpu = cpu_seconds(hub_pids) - hub_cpu
    stop(lanes, started)
    print(f"  {MACHINES} idle machines, a claim each:  {writes / seconds:.1f} etcd writes/s, "
          f"etcd {etcd_cpu / seconds * 100:.1f}% of a core, hubs {hub_cpu / seconds * 100:.1f}%")


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    lanes = os.path.join(sys.argv[2] if len(sys.argv) > 2 else os.path.join(target, "release"), "lanes")
    with tempfile.TemporaryDirectory(prefix="lhp") as root:
        etcd = Etcd(root, members=1)
        env = git_env(root)
        hubs = [Hub(lanes, f"etcd:{etcd.endpoints()}", env) for _ in range(2)]
        try:
            print(f"claim+release over the wire contract (Python clients, one process per agent), "
                  f"{MACHINES} machines x {AGENTS_PER_MACHINE} agents, {seconds:.0f} s each:")
            run(lanes, root, "no hub", [], seconds, MACHINES, AGENTS_PER_MACHINE, etcd)
            run(lanes, root, "through 2 hubs on one etcd", hubs, seconds, MACHINES, AGENTS_PER_MACHINE, etcd)
            # One agent alone: the latency of a single pair through the hub.
            run(lanes, root, "1 agent through a hub on etcd", hubs[:1], seconds, 1, 1, etcd)
            idle(lanes, root, hubs, seconds, etcd)
        finally:
            for hub in hubs:
                hub.stop()
            etcd.stop()


if __name__ == "__main__":
    main()
