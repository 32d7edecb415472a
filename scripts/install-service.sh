#!/usr/bin/env bash
# Installs berth as a system service from this (built) checkout:
#   /usr/lib/berth/            dist/, native/peercred's addon, production node_modules/, package.json, README.md
#   /usr/bin/berthd, berthctl  wrappers that exec node on the installed dist
#   /usr/lib/systemd/system/berthd.service
#   /usr/lib/sysusers.d/berth.conf, /usr/lib/tmpfiles.d/berth.conf
#   /etc/berth/berthd.yaml.example   (berthd.yaml itself is never touched)
#   /etc/dbus-1/system.d/berth-libvirt-dbus.conf   (the policy scripts/libvirt-up.sh uses)
#
# Usage: scripts/install-service.sh [--enable]   (npm run install-service)
#   DESTDIR=/tmp/pkg   lay everything out under /tmp/pkg and touch nothing
#                      else (packaging, tests); no systemctl, no sysusers.
#   NODE=/path/node    the node the wrappers exec (default: the one on PATH).
#   --enable           also `systemctl enable --now berthd` (needs systemd as PID 1).
#
# Idempotent: a second run rewrites the same files and copies node_modules
# again only when package-lock.json changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'install-service: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

enable=0
for arg in "$@"; do
  case "$arg" in
  --enable) enable=1 ;;
  *) die "unknown argument \"$arg\" (usage: install-service.sh [--enable])" ;;
  esac
done

dest=${DESTDIR:-}
lib="$dest/usr/lib/berth"
node_bin=${NODE:-$(command -v node || true)}
[ -n "$node_bin" ] || die "node is not on PATH; set NODE=/path/to/node (Node >= 20)"
[ -n "$dest" ] || [ "$(id -u)" -eq 0 ] || die "needs root (or DESTDIR=DIR to stage a package)"

build() {
  bash scripts/build-native.sh
  # The same freshness rule as scripts/provision.sh: rebuild when a source is newer than the build.
  local stamp=dist/.berth-build-stamp
  if [ -f dist/agent/daemon/main.js ] && [ -f "$stamp" ] &&
    [ -z "$(find base agent hostnet images tsconfig.json package.json -newer "$stamp" \( -name '*.ts' -o -name '*.json' \) -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  [ -d node_modules ] || die "node_modules is missing: run npm run provision first"
  log "building TypeScript"
  npx tsc -p tsconfig.json
  touch "$stamp"
}

install_lib() {
  mkdir -p "$lib"
  # dist is swapped in whole, so no file of an older build stays behind.
  rm -rf "$lib/dist.new"
  mkdir -p "$lib/dist.new"
  cp -a dist/base dist/agent dist/hostnet dist/images "$lib/dist.new/"
  rm -rf "$lib/dist"
  mv "$lib/dist.new" "$lib/dist"
  # The SO_PEERCRED addon, where dist/agent/api looks for it (../../../native/...).
  install -D -m 0755 native/peercred/build/Release/peercred.node "$lib/native/peercred/build/Release/peercred.node"
  install -m 0644 package.json package-lock.json README.md "$lib/"
}

install_node_modules() {
  local want stamp="$lib/node_modules/.berth-lock-sha256" pkg
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "copying production node_modules"
  rm -rf "$lib/node_modules.new"
  mkdir -p "$lib/node_modules.new"
  # Top-level production packages only; each brings its own nested node_modules.
  # Offline: what npm ci installed here is what runs there.
  npm ls --omit=dev --all --parseable 2>/dev/null |
    sed -n "s|^$root/node_modules/||p" |
    grep -E '^(@[^/]+/)?[^/@]+$' |
    while read -r pkg; do
      mkdir -p "$lib/node_modules.new/$(dirname "$pkg")"
      cp -a "node_modules/$pkg" "$lib/node_modules.new/$pkg"
    done
  [ -d "$lib/node_modules.new/fastify" ] || die "could not list production dependencies (npm ls --omit=dev)"
  echo "$want" >"$lib/node_modules.new/.berth-lock-sha256"
  rm -rf "$lib/node_modules"
  mv "$lib/node_modules.new" "$lib/node_modules"
}

wrapper() {
  local name=$1 entry=$2 file="$dest/usr/bin/$1" text
  text=$(printf '#!/bin/sh\n# %s, installed by berth scripts/install-service.sh\nexec %s /usr/lib/berth/dist/%s "$@"\n' \
    "$name" "$node_bin" "$entry")
  mkdir -p "$dest/usr/bin"
  [ -f "$file" ] && [ "$(cat "$file")" = "$text" ] && return 0
  printf '%s\n' "$text" >"$file"
  chmod 0755 "$file"
}

install_files() {
  install -D -m 0644 systemd/berthd.service "$dest/usr/lib/systemd/system/berthd.service"
  install -D -m 0644 systemd/berth.sysusers "$dest/usr/lib/sysusers.d/berth.conf"
  install -D -m 0644 systemd/berth.tmpfiles "$dest/usr/lib/tmpfiles.d/berth.conf"
  install -D -m 0644 systemd/berthd.yaml.example "$dest/etc/berth/berthd.yaml.example"
  install -D -m 0644 systemd/berth-libvirt-dbus.conf "$dest/etc/dbus-1/system.d/berth-libvirt-dbus.conf"
}

activate() {
  # Only on the real system: the group, the directories, systemd and D-Bus learn about the new files.
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers /usr/lib/sysusers.d/berth.conf
  elif ! getent group berth >/dev/null; then
    groupadd --system berth
  fi
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/berth.conf || log "systemd-tmpfiles failed; directories are made when berthd starts"
  if [ -S /run/dbus/system_bus_socket ]; then
    dbus-send --system --type=method_call --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.ReloadConfig >/dev/null 2>&1 || log "could not reload the D-Bus config"
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$enable" -eq 1 ]; then
      systemctl enable --now berthd.service
      log "berthd enabled and started"
    fi
  elif [ "$enable" -eq 1 ]; then
    die "--enable needs systemd as PID 1"
  fi
}

build
install_lib
install_node_modules
wrapper berthd agent/daemon/main.js
wrapper berthctl agent/cli/main.js
install_files
[ -n "$dest" ] || activate
log "installed under ${dest:-/}"
[ -n "$dest" ] || [ "$enable" -eq 1 ] ||
  log "next: cp /etc/berth/berthd.yaml.example /etc/berth/berthd.yaml (edit), systemctl enable --now berthd"
