#!/usr/bin/env bash
# Installs lanes from this checkout: the `lanes` CLI and sidecar and the `lanes-hook` hook client into
# ~/.cargo/bin, and, when Claude Code's `claude` is on PATH, the lanes plugin (user scope) from this checkout
# as a local marketplace; every other agent CLI on PATH (codex, gemini, copilot, opencode) gets lanes' hooks
# through `lanes setup <client> --user`. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
checkout="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lanes/target}"

if ! command -v protoc >/dev/null 2>&1; then
  # The hub's etcd client generates its gRPC code at build time with protoc.
  echo "lanes: installing protoc (Debian's protobuf-compiler), which the build needs..."
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler
fi

echo "lanes: building and installing lanes and lanes-hook (release)..."
cargo install --locked --quiet --path sidecar/lanes
cargo install --locked --quiet --path plugin
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
echo "lanes: installed $bin/lanes and $bin/lanes-hook"
case ":$PATH:" in
  *":$bin:"*) ;;
  *) echo "lanes: add $bin to PATH (Claude Code runs lanes-hook from PATH): export PATH=\"$bin:\$PATH\"" >&2 ;;
esac

if command -v claude >/dev/null 2>&1; then
  echo "lanes: installing the Claude Code plugin (user scope)..."
  claude plugin marketplace add "$checkout" >/dev/null 2>&1 || claude plugin marketplace update lanes >/dev/null 2>&1 || true
  if claude plugin install lanes@lanes >/dev/null 2>&1 || claude plugin update lanes@lanes >/dev/null 2>&1; then
    echo "lanes: plugin lanes@lanes installed and enabled; new Claude Code sessions coordinate through lanes"
  else
    echo "lanes: could not install the plugin; run: claude plugin marketplace add $checkout && claude plugin install lanes@lanes" >&2
  fi
else
  echo "lanes: claude is not on PATH; to add the plugin later, run:"
  echo "  claude plugin marketplace add $checkout && claude plugin install lanes@lanes"
fi

# The other agent CLIs get the same guard through their own hooks, for every repository (user scope).
for client in codex gemini copilot opencode; do
  if command -v "$client" >/dev/null 2>&1; then
    "$bin/lanes" setup "$client" --user || echo "lanes: could not wire $client; run: lanes setup $client --user" >&2
  fi
done
