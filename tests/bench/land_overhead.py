#!/usr/bin/env python3
"""What `lanes land` adds to a landing beyond git's own work, side by side: N branches (one commit each, files of
their own) landed one by one through the queue (`lanes land <branch> --wait`, no test command), against a script
that runs the same git commands per branch (scratch worktree, rebase, compare-and-swap update-ref, the base
checkout brought along, scratch removed). Then batching: 20 entries queued behind a held landing with
`[land] batch = 20` and a test command that counts its runs, one of them red.

Usage: tests/bench/land_overhead.py [BIN_DIR] [N]   (default: $CARGO_TARGET_DIR/release, 20 branches)
Prints figures; asserts nothing about speed.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def git(cwd, *args, env):
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root, name, branches, env, fail=None):
    repo = os.path.join(root, name)
    os.makedirs(repo)
    with open(os.path.join(repo, "README"), "w") as f:
        f.write("base\n")
    git(repo, "init", "-q", "-b", "main", env=env)
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-qm", "base", env=env)
    for i in range(branches):
        git(repo, "checkout", "-q", "-b", f"b{i}", "main", env=env)
        path = "FAIL" if i == fail else f"file{i}.txt"
        with open(os.path.join(repo, path), "w") as f:
            f.write(f"{i}\n")
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-qm", f"b{i}", env=env)
        git(repo, "checkout", "-q", "main", env=env)
    return repo


def plain_git_landing(repo, branch, env):
    """The git commands a landing runs, with nothing around them."""
    common = os.path.join(repo, ".git")
    scratch = os.path.join(common, "scratch")
    old = git(common, "rev-parse", "refs/heads/main", env=env)
    tip = git(common, "rev-parse", f"refs/heads/{branch}", env=env)
    git(common, "worktree", "add", "--detach", "--force", scratch, old, env=env)
    git(scratch, "checkout", "--quiet", "--detach", tip, env=env)
    git(scratch, "rebase", "--quiet", old, env=env)
    new = git(scratch, "rev-parse", "HEAD", env=env)
    git(repo, "read-tree", "-n", "-m", "-u", old, new, env=env)
    git(common, "update-ref", "refs/heads/main", new, old, env=env)
    git(repo, "read-tree", "-m", "-u", old, new, env=env)
    git(common, "worktree", "remove", "--force", scratch, env=env)
    git(common, "worktree", "prune", env=env)


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "release")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    lanes = os.path.join(bin_dir, "lanes")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; {n} branches\n")
    with tempfile.TemporaryDirectory(prefix="llb") as root:
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root, GIT_CONFIG_GLOBAL="/dev/null",
                   GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b",
                   PATH=f"{bin_dir}:{os.environ['PATH']}")
        os.makedirs(os.path.join(root, "run"))

        plain = make_repo(root, "plain", n, env)
        samples = []
        for i in range(n):
            started = time.perf_counter()
            plain_git_landing(plain, f"b{i}", env)
            samples.append((time.perf_counter() - started) * 1e3)
        git_p50 = statistics.median(samples)
        print(f"the same git commands, by a script:      p50 {git_p50:7.1f} ms per branch   max {max(samples):7.1f} ms")

        repo = make_repo(root, "lanes", n, env)
        subprocess.run([lanes, "sidecar", "start"], cwd=repo, env=env, check=True, capture_output=True)
        samples = []
        for i in range(n):
            started = time.perf_counter()
            subprocess.run([lanes, "land", f"b{i}", "--wait"], cwd=repo, env=env, check=True, capture_output=True)
            samples.append((time.perf_counter() - started) * 1e3)
        lanes_p50 = statistics.median(samples)
        print(f"lanes land --wait (queue, land, answer): p50 {lanes_p50:7.1f} ms per branch   max {max(samples):7.1f} ms")
        print(f"what lanes adds per entry:               p50 {lanes_p50 - git_p50:7.1f} ms "
              "(the CLI's polling of the queue included)\n")
        subprocess.run([lanes, "sidecar", "stop"], cwd=repo, env=env, capture_output=True)

        batch = make_repo(root, "batch", n + 1, env, fail=7)
        os.makedirs(os.path.join(batch, ".git", "lanes"), exist_ok=True)
        with open(os.path.join(batch, ".git", "lanes", "config.toml"), "w") as f:
            f.write(f"[land]\nbatch = {n}\n")
        runs, gate = os.path.join(root, "runs"), os.path.join(root, "gate")
        test = f"echo run >> {runs}; while [ ! -e {gate} ]; do sleep 0.05; done; test ! -e FAIL"
        started = time.perf_counter()
        subprocess.run([lanes, "land", "b0", "--test", test], cwd=batch, env=env, check=True, capture_output=True)
        while not os.path.exists(runs):
            time.sleep(0.02)
        for i in range(1, n + 1):
            subprocess.run([lanes, "land", f"b{i}", "--test", test], cwd=batch, env=env, check=True, capture_output=True)
        open(gate, "w").close()
        while True:
            queue = json.loads(subprocess.run([lanes, "--json", "queue"], cwd=batch, env=env, check=True,
                                              capture_output=True, text=True).stdout)
            if all(e["state"] in ("landed", "blocked") for e in queue["entries"]):
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        states = [e["state"] for e in queue["entries"]]
        test_runs = len(open(runs).read().splitlines())
        print(f"batching: {n + 1} entries (one red), batch = {n}: {states.count('landed')} landed, "
              f"{states.count('blocked')} blocked, in {test_runs} test runs ({elapsed:.1f} s)")
        subprocess.run([lanes, "sidecar", "stop"], cwd=batch, env=env, capture_output=True)


if __name__ == "__main__":
    main()
