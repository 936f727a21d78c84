#!/bin/sh
# lanes: installed by `lanes init`; `lanes init --undo` restores what was here before.
# Runs the hook that was here first (kept as HOOK.lanes-chained), then lets lanes stamp or record the commit.
# A missing lanes-hook is a no-op, and lanes never fails or holds up a commit, except the pre-commit guard
# refusing one that stages another agent's files (`git commit --no-verify` skips it). Every commit runs this,
# so it starts no process it can do without (no dirname, no grep: shell built-ins only).
chained="${0%/*}/HOOK.lanes-chained"
if [ ! -x "$chained" ] && [ "HOOK" != "post-rewrite" ]; then
  # The common case, without a process more than needed. A message prepare-commit-msg already stamped
  # (`git commit -m`) needs nothing from commit-msg.
  if [ "HOOK" = "commit-msg" ] && [ -r "$1" ]; then
    while IFS= read -r line; do
      case "$line" in "Lanes-Session: "*) exit 0 ;; esac
    done < "$1"
  fi
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
  if [ "HOOK" = "pre-commit" ]; then
    lanes-hook git HOOK "$@" || exit 1
  else
    run lanes-hook git HOOK "$@" || true
  fi
fi
[ -n "$input" ] && rm -f "$input"
exit 0
