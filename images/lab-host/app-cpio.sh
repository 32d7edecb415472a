#!/usr/bin/env bash
# Packs the project as a lab host runs it: /opt/berth/{package.json, dist/,
# production node_modules/} into an uncompressed cpio, to append to the
# lab host's base.cpio (the kernel unpacks concatenated archives in order).
# Built per run from the working tree, so a lab host runs the code under test.
#
# Usage: images/lab-host/app-cpio.sh OUT.cpio [PROJECT_ROOT]
set -euo pipefail
export LC_ALL=C
out=${1:?usage: app-cpio.sh OUT.cpio [PROJECT_ROOT]}
project=$(cd "${2:-$(dirname "$0")/../..}" && pwd)
[ -f "$project/dist/agent/daemon/main.js" ] || {
  echo "app-cpio: $project/dist is not built (npm run build)" >&2
  exit 1
}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dest="$stage/opt/berth"
mkdir -p "$dest/node_modules"
cp "$project/package.json" "$dest/"
cp -r "$project/dist" "$dest/dist"
# Only what berthd and berthctl load: npm's production tree.
(cd "$project" && npm ls --omit=dev --parseable --all 2>/dev/null) | tail -n +2 | while IFS= read -r dir; do
  rel=${dir#"$project"/}
  case "$rel" in node_modules/*) ;; *) continue ;; esac
  mkdir -p "$stage/opt/berth/$(dirname "$rel")"
  [ -e "$dest/$rel" ] || cp -r "$dir" "$dest/$rel"
done
(cd "$stage" && find . -mindepth 1 | sort | busybox cpio -o -H newc 2>/dev/null) >"$out"
