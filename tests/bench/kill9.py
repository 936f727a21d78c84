#!/usr/bin/env python3
"""Fault injection: the sidecar is killed with SIGKILL at random moments while 32 clients claim as fast as they
can (private paths and a contended pool), round after round. After every restart: every grant a client was told
about is still there, and no two sessions hold the same path. Prints the restart times.

Usage: tests/bench/kill9.py [ROUNDS] [BIN_DIR]   (default 200 rounds, $CARGO_TARGET_DIR/release)
"""
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from claim_load import claim_until


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    lanes = os.path.join(sys.argv[2] if len(sys.argv) > 2 else os.path.join(target, "release"), "lanes")
    with tempfile.TemporaryDirectory(prefix="lk9") as root:
        repo = os.path.join(root, "repo")
        os.makedirs(os.path.join(root, "run"))
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root, GIT_CONFIG_GLOBAL="/dev/null")
        subprocess.run(["git", "init", "-q", repo], check=True, env=env)

        def start():
            began = time.perf_counter()
            out = subprocess.run([lanes, "--json", "sidecar", "start"], cwd=repo, env=env, capture_output=True)
            if out.returncode != 0:
                log = os.path.join(repo, ".git", "lanes", "sidecar.log")
                tail = open(log).read()[-2000:] if os.path.exists(log) else "(no sidecar log)"
                sys.exit(f"lanes sidecar start failed: {(out.stdout + out.stderr).decode().strip()}\n{tail}")
            return json.loads(out.stdout), (time.perf_counter() - began) * 1000

        status, _ = start()
        sock_path = status["socket"]
        granted, lock, stop = {}, threading.Lock(), threading.Event()

        def client(agent):
            session = f"agent{agent}"

            def record(scope, reply):
                if "result" in reply:
                    with lock:
                        granted[reply["result"]["claim"]["id"]] = (session, scope)

            claim_until(stop, sock_path, session, repo, record)

        threads = [threading.Thread(target=client, args=(a,), daemon=True) for a in range(32)]
        for t in threads:
            t.start()
        restarts, lost, conflicts = [], 0, 0
        for _ in range(rounds):
            time.sleep(random.uniform(0.02, 0.12))
            pid = json.loads(subprocess.run([lanes, "--json", "sidecar", "status"], cwd=repo, env=env,
                                            capture_output=True).stdout).get("pid")
            if pid:
                os.kill(pid, signal.SIGKILL)
                while os.path.exists(f"/proc/{pid}") and not open(f"/proc/{pid}/stat").read().split(")")[-1].strip().startswith("Z"):
                    time.sleep(0.001)
            _, took = start()
            restarts.append(took)
        stop.set()
        for t in threads:
            t.join()
        live = json.loads(subprocess.run([lanes, "--json", "status"], cwd=repo, env=env, capture_output=True).stdout)["claims"]
        held = {c["id"]: (c["session"], c["scopes"][0]) for c in live}
        lost = sum(1 for cid, claim in granted.items() if held.get(cid) != claim)
        holders = {}
        for session, scope in held.values():
            holders.setdefault(scope, set()).add(session)
        conflicts = sum(1 for sessions in holders.values() if len(sessions) > 1)
        subprocess.run([lanes, "sidecar", "stop"], cwd=repo, env=env, capture_output=True)
    print(f"{rounds} kill -9 rounds under 32 clients: {len(granted)} grants seen, {lost} lost, "
          f"{conflicts} paths held by two sessions")
    print(f"restart (kill to answering again): p50 {statistics.median(restarts):.1f} ms, "
          f"max {max(restarts):.1f} ms")
    sys.exit(1 if lost or conflicts else 0)


if __name__ == "__main__":
    main()
