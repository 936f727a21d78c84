#!/usr/bin/env python3
"""Fault injection for the hub: a 3-member etcd cluster on loopback, two `lanes hub serve` processes on it, and
eight "machines" (clones, each with its own sidecar listing both hubs) whose 32 clients claim as fast as they can
(private paths and a contended pool). Round after round, a hub or an etcd member is killed with SIGKILL at a
random moment (batches of grants are in flight all the time) and started again. A watcher follows etcd's claim
keys all along (etcd's own watch, through its JSON gateway) and checks that no grant ever lands on a path another
session holds live and that each path's epochs only grow. At the end, in etcd's keys and through the hub: every
grant a client was told about (confirmed by the hub) is still held by the same session on the same path, and no
path is held by two sessions. Prints the restart times.

With --sqlite, one `lanes hub serve` on a SQLite file is killed instead, round after round (its batches of grants,
renewals, releases and event pushes each go in one transaction), and the same end check reads the file itself.

Usage: tests/bench/kill9_hub.py [ROUNDS] [BIN_DIR] [--sqlite]   (default 200 rounds of each: a hub, then an etcd
member, in turn, or 200 of the SQLite hub; $CARGO_TARGET_DIR/release). Needs etcd (Debian package etcd-server)
unless --sqlite.
"""
import base64
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from claim_load import claim_until

MACHINES = 8
CLIENTS_PER_MACHINE = 4


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
    """An etcd cluster of `members` on loopback ports (fsync on, as etcd runs by default)."""

    def __init__(self, root, members=3):
        self.ports = [(free_port(), free_port()) for _ in range(members)]
        cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(self.ports))
        self.args = []
        for i, (client, peer) in enumerate(self.ports):
            self.args.append(["etcd", "--name", f"m{i}", "--data-dir", os.path.join(root, f"etcd{i}"),
                              "--listen-client-urls", f"http://127.0.0.1:{client}",
                              "--advertise-client-urls", f"http://127.0.0.1:{client}",
                              "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                              "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                              "--initial-cluster", cluster, "--heartbeat-interval", "50", "--election-timeout", "500"])
        self.members = [self.spawn(i) for i in range(members)]
        assert wait_for(lambda: all(self.healthy(i) for i in range(members))), "etcd did not come up"

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


def b64(text):
    return base64.b64encode(text.encode()).decode()


def claim_key(key):
    """The (origin, id) of a hub claim key `lanes/<project>/claims/<origin>/<id>`, or None for other keys."""
    parts = key.split("/")
    if len(parts) == 5 and parts[0] == "lanes" and parts[2] == "claims":
        return parts[3], int(parts[4])
    return None


class Watcher(threading.Thread):
    """Follows every hub claim key in etcd from revision 1 on, through whichever member answers, and checks
    each grant as etcd ordered it: the path is held live by no other session, and its epoch is above every
    earlier epoch of that path."""

    def __init__(self, etcd):
        super().__init__(daemon=True)
        self.etcd, self.stop = etcd, threading.Event()
        self.held = {}            # key -> its record
        self.last_epoch = {}      # scope -> the latest grant's epoch
        self.revision = 0
        self.grants, self.violations, self.reconnects = 0, [], 0

    def run(self):
        member = 0
        while not self.stop.is_set():
            port = self.etcd.ports[member % len(self.etcd.ports)][0]
            member += 1
            body = {"create_request": {"key": b64("lanes/"), "range_end": b64("lanes0"),
                                       "start_revision": str(self.revision + 1)}}
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v3/watch", data=json.dumps(body).encode())
            try:
                with urllib.request.urlopen(request, timeout=2) as stream:
                    while not self.stop.is_set():
                        line = stream.readline()
                        if not line:
                            break
                        for event in json.loads(line).get("result", {}).get("events", []):
                            self.apply(event)
            except (OSError, ValueError, http.client.HTTPException):
                # A member killed mid-stream cuts its chunked answer short (IncompleteRead): the next member
                # goes on from the last revision seen.
                pass
            self.reconnects += 1
            time.sleep(0.05)

    def apply(self, event):
        kv = event["kv"]
        key, revision = base64.b64decode(kv["key"]).decode(), int(kv["mod_revision"])
        self.revision = max(self.revision, revision)
        if claim_key(key) is None:
            return
        if event.get("type") == "DELETE":
            self.held.pop(key, None)
            return
        record = json.loads(base64.b64decode(kv["value"]))
        if record["epoch"] == 0:
            # A grant: its epoch is the revision of the Txn that wrote it.
            record["epoch"] = revision
            self.check_grant(key, record)
        self.held[key] = record

    def check_grant(self, key, record):
        self.grants += 1
        claim = record["claim"]
        decided_at = record["expires_at_ms"] - claim["ttl_secs"] * 1000
        for scope in claim["scopes"]:
            for other_key, other in self.held.items():
                if other_key == key or scope not in other["claim"]["scopes"]:
                    continue
                if other["claim"]["holder"] != claim["holder"] and other["expires_at_ms"] > decided_at:
                    self.violations.append(f"{scope}: granted to {claim['holder']} at epoch {record['epoch']} "
                                           f"while {other['claim']['holder']} held it (epoch {other['epoch']})")
            if record["epoch"] <= self.last_epoch.get(scope, 0):
                self.violations.append(f"{scope}: epoch {record['epoch']} after {self.last_epoch[scope]}")
            self.last_epoch[scope] = record["epoch"]


def etcd_claims(etcd):
    """Every hub claim key in etcd now, read from whichever member answers: (origin, id) -> record."""
    body = json.dumps({"key": b64("lanes/"), "range_end": b64("lanes0")}).encode()
    for client, _ in etcd.ports:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{client}/v3/kv/range", data=body)
            with urllib.request.urlopen(request, timeout=5) as r:
                kvs = json.loads(r.read()).get("kvs", [])
        except OSError:
            continue
        claims = {}
        for kv in kvs:
            name = claim_key(base64.b64decode(kv["key"]).decode())
            if name is not None:
                record = json.loads(base64.b64decode(kv["value"]))
                claims[name] = record
        return claims
    raise SystemExit("no etcd member answered a range read")


def sqlite_claims(path):
    """Every hub claim in the SQLite hub's file now (the hub may be running: WAL readers see the last commit)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {(origin, cid): json.loads(record)
                for origin, cid, record in db.execute("SELECT origin, id, record FROM claims")}
    finally:
        db.close()


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
    on_sqlite = "--sqlite" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--sqlite"]
    rounds = int(args[0]) if args else 200
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    lanes = os.path.join(args[1] if len(args) > 1 else os.path.join(target, "release"), "lanes")
    with tempfile.TemporaryDirectory(prefix="lk9h") as root:
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root, GIT_CONFIG_GLOBAL="/dev/null",
                   GIT_AUTHOR_NAME="k", GIT_AUTHOR_EMAIL="k@k", GIT_COMMITTER_NAME="k", GIT_COMMITTER_EMAIL="k@k")
        os.makedirs(os.path.join(root, "run"), mode=0o700)
        db = os.path.join(root, "hub.db")
        etcd = None if on_sqlite else Etcd(root)
        hubs = [Hub(lanes, f"sqlite:{db}", env)] if on_sqlite else [Hub(lanes, f"etcd:{etcd.endpoints()}", env)
                                                                    for _ in range(2)]
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

        watcher = None if on_sqlite else Watcher(etcd)
        if watcher:
            watcher.start()
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
        for r in range(rounds if on_sqlite else 2 * rounds):
            time.sleep(random.uniform(0.05, 0.3))
            if on_sqlite or r % 2 == 0:
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
        now_ms = time.time() * 1000
        stored = sqlite_claims(db) if on_sqlite else etcd_claims(etcd)
        in_store = {name: (r["claim"]["holder"], r["claim"]["scopes"][0])
                    for name, r in stored.items() if r["expires_at_ms"] > now_ms}
        lost = [(m, cid) for (m, cid), claim in granted.items()
                if on_hub.get((origins[m], cid)) != claim or in_store.get((origins[m], cid)) != claim]
        doubled = []
        for live in (on_hub, in_store):
            holders = {}
            for holder, scope in live.values():
                holders.setdefault(scope, set()).add(holder)
            doubled += [scope for scope, who in holders.items() if len(who) > 1]
        time.sleep(0.5)
        # A watcher that died stopped checking: the run would pass on a partial check.
        watcher_alive = watcher is None or watcher.is_alive()
        if watcher:
            watcher.stop.set()
        for repo, _ in machines:
            subprocess.run([lanes, "sidecar", "stop"], cwd=repo, env=env, capture_output=True)
        for hub in hubs:
            hub.stop()
        if etcd:
            etcd.stop()
    rounds_were = (f"{len(hub_restarts)} kill -9 rounds of the SQLite hub" if on_sqlite else
                   f"{len(hub_restarts) + len(etcd_restarts)} kill -9 rounds ({len(hub_restarts)} of a hub, "
                   f"{len(etcd_restarts)} of an etcd member)")
    print(f"{rounds_were} under "
          f"{MACHINES * CLIENTS_PER_MACHINE} clients on {MACHINES} machines: {outcomes['granted']} grants seen, "
          f"{outcomes['refused']} refused as conflicts, {outcomes['unavailable']} answered unavailable")
    where = "its file" if on_sqlite else "etcd's keys"
    print(f"  {len(lost)} granted claims lost, {len(doubled)} paths held by two sessions "
          f"({len(on_hub)} claims live on the hub, {len(in_store)} in {where})")
    for m, cid in lost[:10]:
        print(f"    lost: claim {cid} of machine {m}, granted to {granted[(m, cid)]}")
    if watcher:
        print(f"  the watcher saw {watcher.grants} grants in etcd's order (reconnected {watcher.reconnects} times): "
              f"{len(watcher.violations)} on a path held by another session or with an epoch not above the last")
        for violation in watcher.violations[:10]:
            print(f"    {violation}")
    if not watcher_alive:
        print("  the watcher died before the end of the run: its check is incomplete")
    restarts = (f"hub restart (spawn to listening): p50 {statistics.median(hub_restarts):.0f} ms, "
                f"max {max(hub_restarts):.0f} ms")
    if etcd_restarts:
        restarts += (f"; etcd member restart (spawn to healthy): p50 {statistics.median(etcd_restarts):.0f} ms, "
                     f"max {max(etcd_restarts):.0f} ms")
    print(f"  {restarts}")
    watcher_failed = watcher is not None and (watcher.violations or not watcher.grants or not watcher_alive)
    sys.exit(1 if lost or doubled or watcher_failed or not outcomes["granted"] else 0)


if __name__ == "__main__":
    main()
