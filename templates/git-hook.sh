#!/bin/sh
# lanes: installed by `lanes init`; `lanes init --undo` restores what was here before.
# Runs the hook that was here first (kept as HOOK.lanes-chained), then lets lanes stamp or record the commit.
# A missing lanes-hook is a no-op, and lanes never fails or holds up a commit.
chained="$(dirname "$0")/HOOK.lanes-chained"
if [ ! -x "$chained" ] && [ "HOOK" != "post-rewrite" ]; then
  # The common case, without a process more than needed.
  command -v lanes-hook >/dev/null 2>&1 && exec lanes-hook git HOOK "$@"
  exit 0
fi
input=""
if [ "HOOK" = "post-rewrite" ]; then
  input=$(mktemp) && cat > "$input"
fi
run() {
  if [ -n "$input" ]; then "$@" < "$input"; else "$@"; fi
}
if [ -x "$chained" ]; then
  run "$chained" "$@" || { status=$?; [ -n "$input" ] && rm -f "$input"; exit $status; }
fi
if command -v lanes-hook >/dev/null 2>&1; then
  run lanes-hook git HOOK "$@" || true
fi
[ -n "$input" ] && rm -f "$input"
exit 0
