#!/usr/bin/env python3
"""lanes beside synapse-channel (installed from PyPI into a throwaway venv), in one run, on this machine.

synapse-channel measures itself with `synapse benchmark` (probes claim-grant and durable-claim-grant: one client,
claim to grant over its hub socket). lanes is measured the same way: one Python client, claim to grant over the
sidecar's socket, the same number of iterations, durable (fsync per grant) and not. Python is the client on both
sides, so the client's own cost counts against both alike.

Usage: tests/bench/vs_synapse.py [BIN_DIR] [--write BENCHMARKS.md]
"""
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SYNAPSE = "synapse-channel==0.99.38"
ITERATIONS = 300


def lanes_claims(lanes, durability):
    with tempfile.TemporaryDirectory(prefix="lvs") as root:
        repo = os.path.join(root, "repo")
        os.makedirs(os.path.join(root, "run"))
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root, GIT_CONFIG_GLOBAL="/dev/null",
                   LANES_DURABILITY=durability)
        subprocess.run(["git", "init", "-q", repo], check=True, env=env)
        status = json.loads(subprocess.run([lanes, "--json", "sidecar", "start"], cwd=repo, env=env,
                                           capture_output=True, check=True).stdout)
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(status["socket"])
        stream = conn.makefile("rwb")
        samples = []
        for i in range(ITERATIONS + 20):
            request = {"jsonrpc": "2.0", "id": i, "method": "claim.acquire",
                       "params": {"session": "bench", "worktree": repo, "scopes": [f"f{i}.rs"]}}
            started = time.perf_counter()
            stream.write((json.dumps(request) + "\n").encode())
            stream.flush()
            reply = json.loads(stream.readline())
            assert "result" in reply, reply
            if i >= 20:
                samples.append((time.perf_counter() - started) * 1000)
        subprocess.run([lanes, "sidecar", "stop"], cwd=repo, env=env, capture_output=True)
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(samples), "p95_ms": ordered[int(len(ordered) * 0.95)],
            "claims_per_second": 1000 / statistics.mean(samples)}


def synapse_claims():
    venv = os.path.expanduser("~/.cache/lanes/synapse-venv")
    if not os.path.exists(os.path.join(venv, "bin", "synapse")):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", SYNAPSE], check=True)
    with tempfile.TemporaryDirectory(prefix="svs") as work:
        out = subprocess.run([os.path.join(venv, "bin", "synapse"), "benchmark", "--probe", "claim-grant",
                              "--probe", "durable-claim-grant", "--iterations", str(ITERATIONS), "--json"],
                             cwd=work, capture_output=True, text=True, check=True).stdout
    return {r["name"]: r["metrics"] for r in json.loads(out)["results"]}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    write = sys.argv[sys.argv.index("--write") + 1] if "--write" in sys.argv else None
    if write in args:
        args.remove(write)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    lanes = os.path.join(args[0] if args else os.path.join(target, "release"), "lanes")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    machine = f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    synapse = synapse_claims()
    rows = [
        ("synapse-channel claim-grant", synapse["claim-grant"]),
        ("lanes claim.acquire, durability=process", lanes_claims(lanes, "process")),
        ("synapse-channel durable-claim-grant", synapse["durable-claim-grant"]),
        ("lanes claim.acquire, durability=full (fsync)", lanes_claims(lanes, "full")),
    ]
    lines = [f"Machine: {machine}", f"Command: python3 tests/bench/vs_synapse.py ({ITERATIONS} claims each, one client)", "",
             "| what | p50 | p95 | claims/s |", "|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['p50_ms']:.2f} ms | {m['p95_ms']:.2f} ms | {m['claims_per_second']:.0f} |")
    ratio_fast = rows[0][1]["p50_ms"] / rows[1][1]["p50_ms"]
    ratio_durable = rows[2][1]["p50_ms"] / rows[3][1]["p50_ms"]
    lines += ["", f"lanes is {ratio_fast:.1f}x faster per claim (p50) than synapse-channel without durability, "
                  f"and {ratio_durable:.1f}x faster with it."]
    text = "\n".join(lines)
    print(text)
    if write:
        with open(write, "w") as f:
            f.write("# Benchmarks\n\nSide by side with synapse-channel (PyPI " + SYNAPSE.split("==")[1] + "), measured by "
                    "its own `synapse benchmark` probes and by the same loop over lanes' socket.\n\n" + text + "\n\n"
                    "More figures (latency, throughput with 32 clients, restart, memory, the hook against `node -e 0`, "
                    "checkpoints and commit stamping) are in README.md, each with the command that made it.\n")


if __name__ == "__main__":
    main()
