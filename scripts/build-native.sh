#!/usr/bin/env bash
# Builds berth's one native addon, native/peercred (SO_PEERCRED for the admin
# socket's audit), with node-gyp against the installed Node headers
# (/usr/include/node, Debian's nodejs), so no header download is needed.
# Idempotent: nothing happens when the addon is newer than its sources.
set -euo pipefail
cd "$(dirname "$0")/../native/peercred"
out=build/Release/peercred.node
if [ -f "$out" ] && [ -z "$(find peercred.c binding.gyp -newer "$out" -print -quit)" ]; then exit 0; fi
nodedir=${BERTH_NODEDIR:-/usr}
[ -f "$nodedir/include/node/node_api.h" ] || {
  echo "build-native: $nodedir/include/node/node_api.h is missing (Debian: nodejs ships it; or set BERTH_NODEDIR)" >&2
  exit 1
}
# npm bundles node-gyp (it builds unix-dgram and classic-level with it), so it is wherever npm is.
gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp=../../node_modules/node-gyp/bin/node-gyp.js
[ -f "$gyp" ] || { echo "build-native: node-gyp not found (it comes with npm)" >&2; exit 1; }
node "$gyp" rebuild --nodedir="$nodedir" --loglevel=warn >/dev/null
echo "build-native: built native/peercred/$out" >&2
