#!/usr/bin/env python3
"""What lanes adds to git work, side by side: a checkpoint of a 10,000-file worktree with 10 files changed,
`git commit` with and without lanes' hooks (stamping trailers), an agent worktree made through lanes against a
bare `git worktree add`, and a commit while the sidecar is down.

Usage: tests/bench/git_costs.py [BIN_DIR]   (default: $CARGO_TARGET_DIR/release, built with --release)
Prints figures; asserts nothing.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

FILES = 10_000
ROUNDS = 40


def ms(samples):
    return f"p50 {statistics.median(samples):7.2f} ms   max {max(samples):7.2f} ms"


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "release")
    lanes = os.path.join(bin_dir, "lanes")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; command: {' '.join(sys.argv)}\n")
    with tempfile.TemporaryDirectory(prefix="lgb") as root:
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root, GIT_CONFIG_GLOBAL="/dev/null",
                   GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b",
                   PATH=f"{bin_dir}:{os.environ['PATH']}")
        os.makedirs(os.path.join(root, "run"))
        repo = os.path.join(root, "repo")
        for i in range(FILES):
            d = os.path.join(repo, f"dir{i % 100}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"file{i}.txt"), "w") as f:
                f.write(f"file {i}\n")
        git = lambda *args: subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
        git("init", "-q", "-b", "main")
        git("add", "-A")
        git("commit", "-qm", "10k files")
        subprocess.run([lanes, "init"], cwd=repo, env=env, check=True, capture_output=True)
        sock_path = json.loads(subprocess.run([lanes, "--json", "sidecar", "status"], cwd=repo, env=env,
                                              capture_output=True).stdout)["socket"]
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(sock_path)
        stream = conn.makefile("rwb")

        def checkpoint():
            request = {"jsonrpc": "2.0", "id": 1, "method": "checkpoint.create",
                       "params": {"session": "bench", "worktree": repo}}
            stream.write((json.dumps(request) + "\n").encode())
            stream.flush()
            return json.loads(stream.readline())

        started = time.perf_counter()
        checkpoint()
        print(f"first checkpoint of {FILES} files (builds the session's private index): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
        samples = []
        for round_ in range(ROUNDS):
            for i in range(10):
                with open(os.path.join(repo, f"dir{i}", f"file{i}.txt"), "a") as f:
                    f.write(f"change {round_}\n")
            started = time.perf_counter()
            reply = checkpoint()
            samples.append((time.perf_counter() - started) * 1000)
            assert reply["result"]["checkpoint"], reply
        print(f"checkpoint, {FILES} files, 10 changed (RPC):      {ms(samples)}")

        def commit(round_, extra_env, hooks, hooks_path=None):
            with open(os.path.join(repo, "dir0", "file0.txt"), "a") as f:
                f.write(f"commit {round_} {hooks}\n")
            git("add", "dir0/file0.txt")
            args = ["git", "commit", "-qm", f"round {round_}"]
            if not hooks or hooks_path:
                args[1:1] = ["-c", f"core.hooksPath={hooks_path or '/dev/null'}"]
            started = time.perf_counter()
            subprocess.run(args, cwd=repo, env=dict(env, **extra_env), check=True, capture_output=True)
            return (time.perf_counter() - started) * 1000

        def side_by_side(extra_env):
            """Commits with and without the hooks, alternating, so the repository's drift weighs on both alike."""
            plain, hooked = [], []
            for round_ in range(ROUNDS):
                plain.append(commit(round_, {}, hooks=False))
                hooked.append(commit(round_, extra_env, hooks=True))
            return plain, hooked

        # The floor: git running three hooks that do nothing (prepare-commit-msg, commit-msg, post-commit).
        noop = os.path.join(root, "noop-hooks")
        os.makedirs(noop)
        for hook in ("prepare-commit-msg", "commit-msg", "post-commit"):
            with open(os.path.join(noop, hook), "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(os.path.join(noop, hook), 0o755)
        floor = [commit(r, {}, hooks=True, hooks_path=noop) - commit(r, {}, hooks=False) for r in range(ROUNDS)]
        print(f"three no-op hooks (git's own cost of hooks) add: {statistics.median(floor):.2f} ms")
        plain, stamped = side_by_side({"LANES_SESSION": "bench"})
        last = subprocess.run(["git", "log", "-1", "--format=%(trailers:only,unfold)"], cwd=repo, env=env,
                              capture_output=True, text=True).stdout.strip().replace("\n", ", ")
        print(f"git commit without lanes' hooks:                 {ms(plain)}")
        print(f"git commit with lanes' hooks (stamping):         {ms(stamped)}   ({last})")
        print(f"  stamping adds (p50 of the differences):        "
              f"{statistics.median(h - p for p, h in zip(plain, stamped)):.2f} ms")
        def timed(argv_or_call):
            started = time.perf_counter()
            argv_or_call()
            return (time.perf_counter() - started) * 1000

        def lanes_worktree(i):
            request = {"jsonrpc": "2.0", "id": 1, "method": "worktree.create",
                       "params": {"session": "bench", "cwd": repo, "name": f"agent-lanes{i}"}}
            stream.write((json.dumps(request) + "\n").encode())
            stream.flush()
            reply = json.loads(stream.readline())
            assert "result" in reply, reply

        def bare_worktree(i):
            git("worktree", "add", "-q", "-b", f"bare{i}", os.path.join(root, f"bare{i}"), "HEAD")

        bare = [timed(lambda i=i: bare_worktree(i)) for i in range(10)]
        through_lanes = [timed(lambda i=i: lanes_worktree(i)) for i in range(10)]
        print(f"git worktree add ({FILES} files), bare:           {ms(bare)}")
        print(f"agent worktree through lanes (RPC):              {ms(through_lanes)}")
        print(f"  lanes adds (p50):                              "
              f"{statistics.median(through_lanes) - statistics.median(bare):.2f} ms")
        subprocess.run([lanes, "sidecar", "stop"], cwd=repo, env=env, capture_output=True)
        plain, down = side_by_side({"LANES_SESSION": "bench"})
        print(f"git commit with the hooks, sidecar down:         {ms(down)}   "
              f"(adds {statistics.median(d - p for p, d in zip(plain, down)):.2f} ms)")


if __name__ == "__main__":
    main()
