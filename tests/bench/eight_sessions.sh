#!/usr/bin/env bash
# Runs the eight-sessions scenario (eight real `claude` sessions in eight worktrees, one shared new file, one
# own file each; see tests/e2e/tests/claude.rs) N times in a row and reports how many runs ended with exactly
# one worktree holding the shared file and every other session refused. Usage: tests/bench/eight_sessions.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lanes/target}"
claude_version=2.1.330
export LANES_CLAUDE="${LANES_CLAUDE:-$HOME/.cache/lanes/claude-code-$claude_version/node_modules/@anthropic-ai/claude-code-linux-x64/claude}"
export LANES_E2E_REQUIRED=1
[ -x "$LANES_CLAUDE" ] || { echo "the pinned claude is not installed: run tests/run-all.sh first" >&2; exit 2; }
cargo build --quiet --workspace --all-targets
passed=0
for run in $(seq 1 "$runs"); do
  if cargo nextest run --no-fail-fast -p lanes-e2e eight_sessions >"/tmp/eight_sessions.$run.log" 2>&1; then
    passed=$((passed + 1))
    echo "run $run: ok"
  else
    echo "run $run: FAILED (log: /tmp/eight_sessions.$run.log)"
  fi
done
echo "$passed/$runs runs: exactly one worktree wrote src/shared.rs, every other session was refused (live, then pending work)"
[ "$passed" = "$runs" ]
