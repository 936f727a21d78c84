#!/usr/bin/env bash
# Installs every test dependency and runs the whole suite: formatting, lints, unit, property and
# integration tests. Safe to re-run; works on a fresh machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one build directory across clones so CI does not rebuild from zero.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lanes/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

step "Claude Code CLI (pinned) for the end-to-end tests"
claude_version=2.1.330
claude_dir="$HOME/.cache/lanes/claude-code-$claude_version"
claude_bin="$claude_dir/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
if [ ! -x "$claude_bin" ]; then
  mkdir -p "$claude_dir"
  (cd "$claude_dir" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$claude_version")
fi
"$claude_bin" --version

step "Codex CLI, Gemini CLI, Copilot CLI and opencode (pinned) for the end-to-end tests of the other clients"
# npm package, version, cache directory name, binary: each cached by version like Claude Code.
while read -r package version name; do
  dir="$HOME/.cache/lanes/$name-$version"
  if [ ! -x "$dir/node_modules/.bin/${name%-cli}" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error "$package@$version")
  fi
  "$dir/node_modules/.bin/${name%-cli}" --version
done <<'CLIENTS'
@openai/codex 0.169.0 codex
@google/gemini-cli 0.61.0 gemini-cli
@github/copilot 1.0.102 copilot
opencode-ai 1.18.33 opencode
CLIENTS
export LANES_CODEX="$HOME/.cache/lanes/codex-0.169.0/node_modules/.bin/codex"
export LANES_GEMINI="$HOME/.cache/lanes/gemini-cli-0.61.0/node_modules/.bin/gemini"
export LANES_COPILOT="$HOME/.cache/lanes/copilot-1.0.102/node_modules/.bin/copilot"
export LANES_OPENCODE="$HOME/.cache/lanes/opencode-1.18.33/node_modules/.bin/opencode"
missing=""
command -v python3 >/dev/null || missing="$missing python3"
command -v tmux >/dev/null || missing="$missing tmux"
command -v git >/dev/null || missing="$missing git"
command -v protoc >/dev/null || missing="$missing protobuf-compiler"  # etcd-client generates its gRPC code
command -v etcd >/dev/null || missing="$missing etcd-server"         # the hub's cluster tests run real etcd
command -v chromium >/dev/null || missing="$missing chromium"        # the web view's tests drive a real browser
if [ -n "$missing" ]; then
  step "Debian packages:$missing"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi
export LANES_CLAUDE="$claude_bin" LANES_E2E_REQUIRED=1

step "plugin manifest (claude plugin validate --strict --profile directory)"
HOME="$(mktemp -d)" CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 \
  "$claude_bin" plugin validate --strict --profile directory .

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "lanes demo, built on its own as install.sh builds it (catches features only the workspace enables)"
cargo run --quiet -p lanes -- demo

step "tests"
cargo nextest run --workspace --profile ci

step "fault injection, short: kill -9 of the sidecar under 32 clients, of a hub and an etcd member, of the SQLite hub"
# Each exits non-zero if a granted claim was lost or a path was held by two sessions; the long runs are in
# tests/bench/run.sh.
python3 tests/bench/kill9.py 15 "$CARGO_TARGET_DIR/debug"
python3 tests/bench/kill9_hub.py 5 "$CARGO_TARGET_DIR/debug"
python3 tests/bench/kill9_hub.py 20 "$CARGO_TARGET_DIR/debug" --sqlite
