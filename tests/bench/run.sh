#!/usr/bin/env bash
# Runs every side-by-side benchmark and fault-injection script on this machine and writes BENCHMARKS.md from
# their output (plots in tests/bench/plots/). Builds the release binaries first. Needs python3, git, etcd
# (etcd-server), GNU time (time) for peak RSS, node for the hook comparison; synapse-channel comes from PyPI
# into a throwaway venv (~/.cache/lanes/synapse-venv). Takes about a quarter of an hour.
#
# Usage: bash tests/bench/run.sh [KILL_ROUNDS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lanes/target}"
rounds="${1:-200}"
cargo build --release --quiet -p lanes -p lanes-hook
out="$(mktemp)"
section() { printf '\n## %s\n\n' "$1" >> "$out"; }
failed=""
# Runs a command into the report; a failing one (a lost grant, a path held twice) is remembered, and the run
# fails at the end, after the report is written.
verbatim() {
  echo "\$ $*" >> "$out"; printf '```\n' >> "$out"
  "$@" >> "$out" 2>&1 || failed="$failed
  $*"
  printf '```\n' >> "$out"
}

echo "# Benchmarks" > "$out"
{
  echo
  echo "Made by \`bash tests/bench/run.sh\` on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores,"
  echo "$(date -u +%Y-%m-%d). Each section names the command that made it; every script prints figures and asserts"
  echo "nothing about speed (the fault-injection scripts exit non-zero if a grant was lost or a path held twice)."
} >> "$out"
section "Side by side with synapse-channel"
echo "==> vs_synapse.py" >&2
python3 tests/bench/vs_synapse.py --plots tests/bench/plots >> "$out"
section "The edit hook against node -e 0"
echo "==> hook_vs_node.py" >&2
verbatim python3 tests/bench/hook_vs_node.py
section "Checkpoints and commit stamping"
echo "==> git_costs.py" >&2
verbatim python3 tests/bench/git_costs.py
section "Landing: what lanes adds to git's own work, and batching"
echo "==> land_overhead.py" >&2
verbatim python3 tests/bench/land_overhead.py
section "Following the work: 20 worktrees of 10,000 files"
echo "==> cargo bench -p lanes --bench sidecar -- work" >&2
verbatim cargo bench --quiet -p lanes --bench sidecar -- work
section "The hub at scale: 8 machines x 4 agents through 2 hubs on one etcd, beside no hub"
echo "==> hub_pairs.py" >&2
verbatim python3 tests/bench/hub_pairs.py 10
echo "==> cargo bench -p lanes --bench sidecar -- hub" >&2
verbatim cargo bench --quiet -p lanes --bench sidecar -- hub
section "Fault injection"
echo "==> kill9.py $rounds" >&2
verbatim python3 tests/bench/kill9.py "$rounds"
echo "==> kill9_hub.py $rounds" >&2
verbatim python3 tests/bench/kill9_hub.py "$rounds"
echo "==> kill9_hub.py $rounds --sqlite" >&2
verbatim python3 tests/bench/kill9_hub.py "$rounds" --sqlite
mv "$out" BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
if [ -n "$failed" ]; then
  echo "FAILED:$failed" >&2
  exit 1
fi
