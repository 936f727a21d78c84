#!/usr/bin/env python3
"""Fault injection for the hub: a 3-member etcd cluster on loopback, two `lanes hub serve` processes on it, and
four "machines" (clones, each with its own sidecar listing both hubs) whose 32 clients claim as fast as they can
(private paths and a contended pool). Round after round, a hub or an etcd member is killed with SIGKILL at a
random moment and started again. At the end, through the hub: every grant a client was told about (confirmed by
the hub) is still held by the same session on the same path, and no path is held by two sessions. Prints the
restart times.

Usage: tests/bench/kill9_hub.py [ROUNDS] [BIN_DIR]   (default 200 rounds of each: a hub, then an etcd member, in
turn; $CARGO_TARGET_DIR/release). Needs etcd (Debian package etcd-server).
"""
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from claim_load import claim_until

MACHINES = 4
CLIENTS_PER_MACHINE = 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


class Etcd:
    def __init__(self, root):
        self.ports = [(free_port(), free_port()) for _ in range(3)]
        cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(self.ports))
        self.args = []
        for i, (client, peer) in enumerate(self.ports):
            self.args.append(["etcd", "--name", f"m{i}", "--data-dir", os.path.join(root, f"etcd{i}"),
                              "--listen-client-urls", f"http://127.0.0.1:{client}",
                              "--advertise-client-urls", f"http://127.0.0.1:{client}",
                              "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                              "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                              "--initial-cluster", cluster, "--heartbeat-interval", "50", "--election-timeout", "500"])
        self.members = [self.spawn(i) for i in range(3)]
        assert wait_for(lambda: all(self.healthy(i) for i in range(3))), "etcd did not come up"

    def spawn(self, i):
        return subprocess.Popen(self.args[i], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def healthy(self, i):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[i][0]}/health", timeout=1) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def endpoints(self):
        return ",".join(f"http://127.0.0.1:{c}" for c, _ in self.ports)

    def kill_and_restart(self, i):
        self.members[i].send_signal(signal.SIGKILL)
        self.members[i].wait()
        began = time.perf_counter()
        self.members[i] = self.spawn(i)
        wait_for(lambda: self.healthy(i))
        return (time.perf_counter() - began) * 1000

    def stop(self):
        for m in self.members:
            m.kill()
            m.wait()


class Hub:
    def __init__(self, lanes, store, env):
        self.lanes, self.store, self.env, self.port = lanes, store, env, free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.process = None
        self.start()

    def start(self):
        began = time.perf_counter()
        self.process = subprocess.Popen([self.lanes, "hub", "serve", "--listen", f"127.0.0.1:{self.port}",
                                         "--store", self.store], env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        assert "listening" in line, line
        return (time.perf_counter() - began) * 1000

    def kill_and_restart(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return self.start()

    def stop(self):
        self.process.kill()
        self.process.wait()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    lanes = os.path.join(sys.argv[2] if len(sys.argv) > 2 else os.path.join(target, "release"), "lanes")
    with tempfile.TemporaryDirectory(prefix="lk9h") as root:
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root, GIT_CONFIG_GLOBAL="/dev/null",
                   GIT_AUTHOR_NAME="k", GIT_AUTHOR_EMAIL="k@k", GIT_COMMITTER_NAME="k", GIT_COMMITTER_EMAIL="k@k")
        os.makedirs(os.path.join(root, "run"), mode=0o700)
        etcd = Etcd(root)
        hubs = [Hub(lanes, f"etcd:{etcd.endpoints()}", env) for _ in range(2)]
        upstream = os.path.join(root, "upstream")
        subprocess.run(["git", "init", "-q", upstream], check=True, env=env)
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=upstream, check=True, env=env)
        machines = []
        for m in range(MACHINES):
            repo = os.path.join(root, f"machine{m}")
            subprocess.run(["git", "clone", "-q", upstream, repo], check=True, env=env)
            urls = [h.url for h in (hubs if m % 2 == 0 else hubs[::-1])]
            os.makedirs(os.path.join(repo, ".git", "lanes"), exist_ok=True)
            with open(os.path.join(repo, ".git", "lanes", "config.toml"), "w") as f:
                f.write(f"[hub]\nurls = {json.dumps(urls)}\n")
            status = json.loads(subprocess.run([lanes, "--json", "sidecar", "start"], cwd=repo, env=env,
                                               capture_output=True, check=True).stdout)
            machines.append((repo, status["socket"]))

        granted, lock, stop = {}, threading.Lock(), threading.Event()
        outcomes = {"granted": 0, "refused": 0, "unavailable": 0}

        def client(machine, agent):
            repo, sock_path = machines[machine]
            session = f"m{machine}-agent{agent}"

            def record(scope, reply):
                if "result" in reply:
                    with lock:
                        granted[(machine, reply["result"]["claim"]["id"])] = (session, scope)
                        outcomes["granted"] += 1
                    return
                code = reply["error"]["data"]["code"]
                with lock:
                    outcomes["refused" if code == "conflict" else "unavailable"] += 1
                if code != "conflict":
                    time.sleep(0.05)

            claim_until(stop, sock_path, session, repo, record)

        threads = [threading.Thread(target=client, args=(m, a), daemon=True)
                   for m in range(MACHINES) for a in range(CLIENTS_PER_MACHINE)]
        for t in threads:
            t.start()
        hub_restarts, etcd_restarts = [], []
        for r in range(2 * rounds):
            time.sleep(random.uniform(0.05, 0.3))
            if r % 2 == 0:
                hub_restarts.append(random.choice(hubs).kill_and_restart())
            else:
                etcd_restarts.append(etcd.kill_and_restart(random.randrange(3)))
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()

        # Let every sidecar state its claims once more, then read the hub's claim space.
        time.sleep(6)
        origins = {}
        for m, (repo, _) in enumerate(machines):
            status = json.loads(subprocess.run([lanes, "--json", "status"], cwd=repo, env=env,
                                               capture_output=True).stdout)
            origins[m] = status["hub"]["origin"]
        reply = json.loads(subprocess.run([lanes, "--json", "hub", "claims"], cwd=machines[0][0], env=env,
                                          capture_output=True).stdout)
        on_hub = {(c["origin"], c["id"]): (c["holder"], c["scopes"][0]) for c in reply["claims"]}
        lost = [(m, cid) for (m, cid), claim in granted.items() if on_hub.get((origins[m], cid)) != claim]
        holders = {}
        for holder, scope in on_hub.values():
            holders.setdefault(scope, set()).add(holder)
        doubled = [scope for scope, who in holders.items() if len(who) > 1]
        for repo, _ in machines:
            subprocess.run([lanes, "sidecar", "stop"], cwd=repo, env=env, capture_output=True)
        for hub in hubs:
            hub.stop()
        etcd.stop()
    print(f"{2 * rounds} kill -9 rounds ({len(hub_restarts)} of a hub, {len(etcd_restarts)} of an etcd member) under "
          f"{MACHINES * CLIENTS_PER_MACHINE} clients on {MACHINES} machines: {outcomes['granted']} grants seen, "
          f"{outcomes['refused']} refused as conflicts, {outcomes['unavailable']} answered unavailable")
    print(f"  {len(lost)} granted claims lost, {len(doubled)} paths held by two sessions "
          f"({len(on_hub)} claims live on the hub)")
    print(f"  hub restart (spawn to listening): p50 {statistics.median(hub_restarts):.0f} ms, "
          f"max {max(hub_restarts):.0f} ms; etcd member restart (spawn to healthy): "
          f"p50 {statistics.median(etcd_restarts):.0f} ms, max {max(etcd_restarts):.0f} ms")
    sys.exit(1 if lost or doubled else 0)


if __name__ == "__main__":
    main()
