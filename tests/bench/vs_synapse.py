#!/usr/bin/env python3
"""lanes beside synapse-channel (installed from PyPI into a throwaway venv), in one run, on this machine.

Two comparisons:

1. The same claim workload for 1, 8 and 32 agents against lanes' sidecar and against a synapse-channel hub,
   each agent its own process with its own connection: every fourth claim goes for one of three shared paths
   (so agents collide and get refused), the rest for paths of their own; every grant is released. Durable
   (lanes `durability = "full"`, synapse with its SQLite journal) and not (lanes `durability = "process"`,
   synapse in memory). Prints claims/s and per-claim latency, and the ratios.
2. synapse-channel's own `synapse benchmark` probes (one client, claim to grant) beside the same loop over
   lanes' socket.

Usage: tests/bench/vs_synapse.py [BIN_DIR] [--plots DIR]
The script re-runs itself under the venv's Python (which has synapse-channel). It prints progress on stderr and a
Markdown section on stdout (tests/bench/run.sh puts it into BENCHMARKS.md); with --plots it writes the two
plots there as SVG. Prints figures; asserts nothing.
"""
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SYNAPSE = "synapse-channel==0.99.38"
VENV = os.path.expanduser("~/.cache/lanes/synapse-venv")
ITERATIONS = 300
AGENTS = (1, 8, 32)
CLAIMS_PER_AGENT = {1: 400, 8: 100, 32: 50}


def ensure_venv():
    """Re-executes this script under the venv's Python, creating the venv first if needed."""
    python = os.path.join(VENV, "bin", "python")
    if sys.prefix == VENV:
        return
    if not os.path.exists(os.path.join(VENV, "bin", "synapse")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", SYNAPSE], check=True)
    os.execv(python, [python, *sys.argv])


def path_for(agent, k):
    """Every fourth claim goes for one of three shared paths; the rest are the agent's own."""
    return f"shared/{k % 3}.py" if k % 4 == 0 else f"agent{agent}/{k}.py"


# ---------------------------------------------------------------- lanes

class LanesWorld:
    def __init__(self, lanes, durability):
        self.lanes, self.durability = lanes, durability

    def __enter__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="lvs")
        root = self.tmp.name
        self.repo = os.path.join(root, "repo")
        os.makedirs(os.path.join(root, "run"))
        self.env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(root, "run"), HOME=root,
                        GIT_CONFIG_GLOBAL="/dev/null", LANES_DURABILITY=self.durability)
        subprocess.run(["git", "init", "-q", self.repo], check=True, env=self.env)
        status = json.loads(subprocess.run([self.lanes, "--json", "sidecar", "start"], cwd=self.repo, env=self.env,
                                           capture_output=True, check=True).stdout)
        self.socket = status["socket"]
        return self

    def __exit__(self, *exc):
        subprocess.run([self.lanes, "sidecar", "stop"], cwd=self.repo, env=self.env, capture_output=True)
        self.tmp.cleanup()


def lanes_agent(index, socket_path, repo, claims, start, results):
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(socket_path)
    stream = conn.makefile("rwb")

    def call(method, params):
        stream.write((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) + "\n").encode())
        stream.flush()
        return json.loads(stream.readline())

    session = f"agent{index}"
    latencies, grants, conflicts = [], 0, 0
    start.wait()
    for k in range(claims):
        began = time.perf_counter()
        reply = call("claim.acquire", {"session": session, "worktree": repo, "scopes": [path_for(index, k)]})
        latencies.append((time.perf_counter() - began) * 1000)
        if "result" in reply:
            grants += 1
            call("claim.release", {"session": session, "claims": [reply["result"]["claim"]["id"]]})
        elif reply["error"]["data"]["code"] == "conflict":
            conflicts += 1
        else:
            raise RuntimeError(reply)
    results.put((latencies, grants, conflicts))


def lanes_workload(lanes, durable, agents):
    with LanesWorld(lanes, "full" if durable else "process") as world:
        return run_agents(lanes_agent, (world.socket, world.repo), agents)


# ---------------------------------------------------------------- synapse-channel

def synapse_hub(durable, scratch, ports):
    import asyncio
    from pathlib import Path

    from synapse_channel.core.hub import SynapseHub
    from synapse_channel.core.persistence import EventStore

    async def serve():
        journal = EventStore(Path(scratch) / "hub.db") if durable else None
        hub = SynapseHub(hub_id="lanes-bench", journal=journal, anti_rollback_checkpoint=False)
        server = asyncio.create_task(hub.serve("127.0.0.1", 0))
        _, port = await hub.wait_until_serving()
        ports.put(port)
        await server

    asyncio.run(serve())


def synapse_agent(index, port, _unused, claims, start, results):
    import asyncio

    from synapse_channel.client.agent import SynapseAgent
    from synapse_channel.core.protocol import MessageType

    answers = {MessageType.CLAIM_GRANTED, MessageType.CLAIM_DENIED, MessageType.RELEASE_GRANTED,
               MessageType.RELEASE_DENIED}

    async def work():
        pending = {}

        async def on_message(message):
            waiter = pending.pop((message.get("task_id"), message.get("type") in
                                  (MessageType.CLAIM_GRANTED, MessageType.CLAIM_DENIED)), None)
            if waiter is not None and message.get("type") in answers and not waiter.done():
                waiter.set_result(message.get("type"))

        agent = SynapseAgent(f"agent{index}", on_message, uri=f"ws://127.0.0.1:{port}", heartbeat_interval=60.0,
                             verbose=False)
        connection = asyncio.create_task(agent.connect())
        if not await agent.wait_until_ready(20):
            raise RuntimeError("synapse agent did not connect")
        await asyncio.get_running_loop().run_in_executor(None, start.wait)
        loop = asyncio.get_running_loop()
        latencies, grants, conflicts = [], 0, 0
        for k in range(claims):
            task = f"T-{index}-{k}"
            answer = pending[(task, True)] = loop.create_future()
            began = time.perf_counter()
            await agent.claim(task, note="bench", worktree="bench-repo", paths=(path_for(index, k),))
            outcome = await asyncio.wait_for(answer, 30)
            latencies.append((time.perf_counter() - began) * 1000)
            if outcome == MessageType.CLAIM_GRANTED:
                grants += 1
                released = pending[(task, False)] = loop.create_future()
                await agent.release(task)
                await asyncio.wait_for(released, 30)
            else:
                conflicts += 1
        agent.running = False
        connection.cancel()
        return latencies, grants, conflicts

    results.put(asyncio.run(work()))


def synapse_workload(durable, agents):
    with tempfile.TemporaryDirectory(prefix="svs") as scratch:
        ports = multiprocessing.Queue()
        hub = multiprocessing.Process(target=synapse_hub, args=(durable, scratch, ports), daemon=True)
        hub.start()
        try:
            port = ports.get(timeout=60)
            return run_agents(synapse_agent, (port, None), agents)
        finally:
            hub.kill()
            hub.join()


# ---------------------------------------------------------------- the harness

def run_agents(target, where, agents):
    """Starts one process per agent, lets them go at once, and gathers claims/s and claim latencies."""
    start, results = multiprocessing.Event(), multiprocessing.Queue()
    claims = CLAIMS_PER_AGENT[agents]
    processes = [multiprocessing.Process(target=target, args=(i, *where, claims, start, results))
                 for i in range(agents)]
    for p in processes:
        p.start()
    time.sleep(1.0 + agents * 0.05)  # every agent connected and waiting
    began = time.perf_counter()
    start.set()
    gathered = [results.get(timeout=600) for _ in processes]
    elapsed = time.perf_counter() - began
    for p in processes:
        p.join()
    latencies = sorted(l for g in gathered for l in g[0])
    return {
        "claims_per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(len(latencies) * 0.95)],
        "grants": sum(g[1] for g in gathered),
        "conflicts": sum(g[2] for g in gathered),
    }


def lanes_claims(lanes, durability):
    """One client, claim to grant, as synapse's own probe measures itself."""
    with LanesWorld(lanes, durability) as world:
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(world.socket)
        stream = conn.makefile("rwb")
        samples = []
        for i in range(ITERATIONS + 20):
            request = {"jsonrpc": "2.0", "id": i, "method": "claim.acquire",
                       "params": {"session": "bench", "worktree": world.repo, "scopes": [f"f{i}.rs"]}}
            began = time.perf_counter()
            stream.write((json.dumps(request) + "\n").encode())
            stream.flush()
            reply = json.loads(stream.readline())
            assert "result" in reply, reply
            if i >= 20:
                samples.append((time.perf_counter() - began) * 1000)
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(samples), "p95_ms": ordered[int(len(ordered) * 0.95)],
            "claims_per_second": 1000 / statistics.mean(samples)}


def synapse_probes():
    with tempfile.TemporaryDirectory(prefix="svs") as work:
        out = subprocess.run([os.path.join(VENV, "bin", "synapse"), "benchmark", "--probe", "claim-grant",
                              "--probe", "durable-claim-grant", "--iterations", str(ITERATIONS), "--json"],
                             cwd=work, capture_output=True, text=True, check=True).stdout
    return {r["name"]: r["metrics"] for r in json.loads(out)["results"]}


def bar_chart(path, title, unit, groups, series, log=False):
    """A grouped bar chart as a small SVG, with the value on each bar."""
    import math
    width, height, left, bottom, top = 640, 320, 60, 40, 40
    colors = ["#2f6fb0", "#9bbce0", "#c0504d", "#e6a6a4"]
    top_value = max(v for values in series.values() for v in values) * 1.15
    scale = (lambda v: math.log10(max(v, 1)) / math.log10(top_value)) if log else (lambda v: v / top_value)
    plot_h, plot_w = height - bottom - top, width - left - 20
    group_w = plot_w / len(groups)
    bar_w = group_w * 0.8 / len(series)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30 * ((len(series) + 1) // 2)}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 20}" y2="{top + plot_h}" stroke="#333"/>',
             f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
             f'text-anchor="middle">{unit}{" (log scale)" if log else ""}</text>']
    for g, group in enumerate(groups):
        x0 = left + g * group_w + group_w * 0.1
        parts.append(f'<text x="{left + g * group_w + group_w / 2}" y="{top + plot_h + 16}" '
                     f'text-anchor="middle">{group}</text>')
        for s, (name, values) in enumerate(series.items()):
            h = max(1.0, scale(values[g]) * plot_h)
            x, y = x0 + s * bar_w, top + plot_h - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                         f'fill="{colors[s % len(colors)]}"/>')
            label = f"{values[g]:.2f}" if values[g] < 10 else f"{values[g]:.0f}"
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                         f'font-size="9">{label}</text>')
    for s, name in enumerate(series):
        x, y = left + (s % 2) * 280, height + 4 + (s // 2) * 18
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colors[s % len(colors)]}"/>'
                     f'<text x="{x + 18}" y="{y + 10}">{name}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ensure_venv()
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    plots = sys.argv[sys.argv.index("--plots") + 1] if "--plots" in sys.argv else None
    if plots in args:
        args.remove(plots)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lanes/target"))
    lanes = os.path.join(args[0] if args else os.path.join(target, "release"), "lanes")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    machine = f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"

    workload = {}
    for durable in (False, True):
        for agents in AGENTS:
            for name, run in (("lanes", lambda: lanes_workload(lanes, durable, agents)),
                              ("synapse-channel", lambda: synapse_workload(durable, agents))):
                result = run()
                workload[(name, durable, agents)] = result
                print(f"{name:<16} {'durable' if durable else 'in memory':<9} {agents:>2} agents: "
                      f"{result['claims_per_second']:8.0f} claims/s  p50 {result['p50_ms']:6.2f} ms  "
                      f"p95 {result['p95_ms']:6.2f} ms  ({result['grants']} granted, {result['conflicts']} refused)",
                      file=sys.stderr, flush=True)

    lines = [f"Machine: {machine}",
             f"Command: `python3 tests/bench/vs_synapse.py --plots tests/bench/plots` (synapse-channel "
             f"{SYNAPSE.split('==')[1]} from PyPI in a throwaway venv)", "",
             "### The same claim workload, 1, 8 and 32 agents", "",
             "Each agent is its own process with its own connection. Every fourth claim goes for one of three shared "
             "paths (agents collide and are refused), the rest for paths of their own; every grant is released. "
             "Durable: lanes `durability = \"full\"` (fsync per grant) against synapse-channel with its SQLite journal; "
             "in memory: lanes `durability = \"process\"` against synapse-channel without a journal.", "",
             "| mode | agents | lanes claims/s | synapse claims/s | ratio | lanes p50 / p95 | synapse p50 / p95 |",
             "|---|---|---|---|---|---|---|"]
    for durable in (False, True):
        for agents in AGENTS:
            l, s = workload[("lanes", durable, agents)], workload[("synapse-channel", durable, agents)]
            lines.append(f"| {'durable' if durable else 'in memory'} | {agents} | {l['claims_per_second']:.0f} | "
                         f"{s['claims_per_second']:.0f} | {l['claims_per_second'] / s['claims_per_second']:.1f}x | "
                         f"{l['p50_ms']:.2f} / {l['p95_ms']:.2f} ms | {s['p50_ms']:.2f} / {s['p95_ms']:.2f} ms |")
    lines += ["", "![claims per second](tests/bench/plots/claims-per-second.svg)",
              "![claim latency p50](tests/bench/plots/claim-latency.svg)", ""]

    probes = synapse_probes()
    rows = [
        ("synapse-channel claim-grant", probes["claim-grant"]),
        ("lanes claim.acquire, durability=process", lanes_claims(lanes, "process")),
        ("synapse-channel durable-claim-grant", probes["durable-claim-grant"]),
        ("lanes claim.acquire, durability=full (fsync)", lanes_claims(lanes, "full")),
    ]
    lines += ["### synapse-channel's own probe beside the same loop over lanes' socket", "",
              f"One client, {ITERATIONS} claims, claim to grant (synapse's `synapse benchmark --probe claim-grant "
              "--probe durable-claim-grant`).", "",
              "| what | p50 | p95 | claims/s |", "|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['p50_ms']:.2f} ms | {m['p95_ms']:.2f} ms | {m['claims_per_second']:.0f} |")
    ratio_fast = rows[0][1]["p50_ms"] / rows[1][1]["p50_ms"]
    ratio_durable = rows[2][1]["p50_ms"] / rows[3][1]["p50_ms"]
    lines += ["", f"lanes is {ratio_fast:.1f}x faster per claim (p50) than synapse-channel without durability, "
                  f"and {ratio_durable:.1f}x faster with it."]
    print("\n".join(lines))
    if plots:
        os.makedirs(plots, exist_ok=True)
        groups = [f"{a} agent{'s' if a > 1 else ''}" for a in AGENTS]
        series = {}
        for durable in (False, True):
            mode = "durable" if durable else "in memory"
            for name in ("lanes", "synapse-channel"):
                series[f"{name}, {mode}"] = [workload[(name, durable, a)]["claims_per_second"] for a in AGENTS]
        bar_chart(os.path.join(plots, "claims-per-second.svg"), "claims per second (higher is better)",
                  "claims/s", groups, series, log=True)
        latency = {k: [workload[(k.split(",")[0], "durable" in k, a)]["p50_ms"] for a in AGENTS] for k in series}
        bar_chart(os.path.join(plots, "claim-latency.svg"), "claim latency, p50 (lower is better)", "ms", groups,
                  latency, log=True)

if __name__ == "__main__":
    main()
