#!/usr/bin/env bash
# Installs lanes (the CLI and sidecar) and lanes-hook (the hook client) from this checkout.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lanes/target}"
cargo install --locked --quiet --path sidecar/lanes
cargo install --locked --quiet --path plugin
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
  *":$bin:"*) ;;
  *) echo "lanes: add $bin to your PATH to use lanes and lanes-hook" >&2 ;;
esac
