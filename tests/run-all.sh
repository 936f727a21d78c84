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

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
cargo nextest run --workspace --profile ci
