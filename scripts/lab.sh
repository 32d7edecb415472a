#!/usr/bin/env bash
# npm run lab: start berthd on its embedded default in a throw-away state dir,
# show what it answers, and stop it. Later issues grow this into the full lab
# (a network, a real libvirt guest and a netns guest getting leases and metadata).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    *) echo "usage: npm run lab [-- --keep]" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d /tmp/berth-lab.XXXXXX)
state="$work/state"
sock="$work/berthd.sock"
berthd=(node "$root/dist/agent/daemon/main.js" --state-dir "$state" --socket "$sock")
berthctl=(node "$root/dist/agent/cli/main.js" --socket "$sock")

cleanup() {
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$work"
}
[ "$keep" -eq 1 ] || trap cleanup EXIT INT TERM

echo "== starting berthd (embedded default config, state in $state)"
"${berthd[@]}" >"$work/berthd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  "${berthctl[@]}" status >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/berthd.log" >&2; exit 1; }
  sleep 0.1
done

echo "== berthctl status"
"${berthctl[@]}" status
echo
echo "== berthctl status --json"
"${berthctl[@]}" status --json
echo
echo "== a refused request is audited: berthctl audit --limit 20000"
"${berthctl[@]}" audit --limit 20000 || echo "(exit $? as expected: refused)"
"${berthctl[@]}" audit
echo
ls -l "$sock"
if [ "$keep" -eq 1 ]; then
  echo "== berthd keeps running (pid $pid). Explore:"
  echo "   node dist/agent/cli/main.js --socket $sock status"
  echo "   kill $pid; rm -rf $work    # when done"
else
  echo "== stopping berthd (SIGTERM)"
fi
