#!/usr/bin/env bash
# Idempotent provisioning for a Debian 12 host: Debian packages from
# scripts/debian-packages.txt, then npm dependencies and the TypeScript build.
# A second run finds nothing missing and does no work.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf 'provision: %s\n' "$*" >&2; }

# Registries hiccup: a DNS lookup fails now and then, and once the npm
# registry was unreachable for a quarter of an hour. Keep trying until a
# deadline (BERTH_PROVISION_DEADLINE seconds, default 40 min) rather than a
# fixed count, so an outage shorter than that costs time, not the run.
deadline=$((SECONDS + ${BERTH_PROVISION_DEADLINE:-2400}))
retry() {
  local n=1 pause
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "giving up on '$*' after $n attempts: the registry stayed unreachable"
      return 1
    fi
    pause=$((n < 6 ? n * 10 : 60))
    log "attempt $n of '$*' failed; retrying in $pause s"
    sleep "$pause"
    n=$((n + 1))
  done
}

missing_debs() {
  local pkg
  grep -Ev '^\s*(#|$)' scripts/debian-packages.txt | while read -r pkg; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || echo "$pkg"
  done
}

install_debs() {
  local want
  mapfile -t want < <(missing_debs)
  [ "${#want[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages (${want[*]}) and not root: run as root or install them"
    exit 1
  fi
  log "installing Debian packages: ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Daemons must not start from maintainer scripts: berth starts them itself,
  # and a machine without systemd as PID 1 would fail the postinst otherwise.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  retry apt-get update -qq
  retry apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
}

install_npm() {
  # The stamp holds the lockfile's hash, so npm runs only when the lockfile
  # changed or node_modules is gone.
  local stamp=node_modules/.berth-lock-sha256 want
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "installing npm dependencies"
  retry npm ci --no-audit --no-fund --loglevel=error --fetch-retries=4 --fetch-retry-maxtimeout=30000
  echo "$want" >"$stamp"
}

build() {
  # The SO_PEERCRED addon keeps its own freshness check.
  bash scripts/build-native.sh
  # Rebuild only when a source file is newer than the last build.
  local stamp=dist/.berth-build-stamp
  if [ -f "$stamp" ] && [ -z "$(find base agent hostnet images tsconfig.json package.json -newer "$stamp" \( -name '*.ts' -o -name '*.json' \) -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  log "building TypeScript"
  npx tsc -p tsconfig.json
  touch "$stamp"
}

ensure_group() {
  # The admin socket is 0660 root:berth; the group must exist for that.
  getent group berth >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || return 0
  log "adding system group berth"
  groupadd --system berth
}

install_debs
install_npm
build
ensure_group
