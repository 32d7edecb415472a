#!/usr/bin/env bash
# Starts what berth's libvirt runtime needs: the system D-Bus, virtlogd,
# libvirtd and libvirt-dbus. Idempotent: a second run finds everything alive
# and does nothing (about 0.1 s).
#
# With systemd as PID 1 the units are started by systemctl. Without it (a
# container, this lab) the daemons are started by hand:
#   - liveness is checked by connecting to each socket, never with pgrep
#     (pgrep also matches zombies);
#   - libvirtd runs under `tini -s`: a subreaper reaps QEMU at once, otherwise
#     "shut off" arrives about 1.6 s after the guest powered off;
#   - libvirt-dbus runs as root; its packaged D-Bus policy only lets the
#     libvirtdbus user own org.libvirt (that user relies on polkit), so a
#     small policy lets root own it too.
#   - a guest's serial console is a file that virtlogd writes and rotates, so
#     a guest printing without end fills a bounded space: each file is capped
#     at max_size and at most max_backups old files are kept (the newest output
#     is always in serial.log). berth sets both explicitly in virtlogd.conf
#     (BERTH_SERIAL_LOG_MAX_SIZE, default 1 MiB; BERTH_SERIAL_LOG_BACKUPS,
#     default 2: at most 3 MiB per guest) and makes sure QEMU hands its
#     console files to virtlogd (qemu.conf stdio_handler "logd", the default),
#     never writing them itself, unbounded.
# Logs go to /var/log/berth/. Exit 0 when all four answer.
set -euo pipefail

log() { printf 'libvirt-up: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root"

DBUS_SOCK=/run/dbus/system_bus_socket
VIRTLOGD_SOCK=/run/libvirt/virtlogd-sock
LIBVIRT_SOCK=/run/libvirt/libvirt-sock
POLICY=/etc/dbus-1/system.d/berth-libvirt-dbus.conf
QEMU_CONF=/etc/libvirt/qemu.conf
VIRTLOGD_CONF=/etc/libvirt/virtlogd.conf
SERIAL_LOG_MAX_SIZE=${BERTH_SERIAL_LOG_MAX_SIZE:-1048576}
SERIAL_LOG_BACKUPS=${BERTH_SERIAL_LOG_BACKUPS:-2}
LOGDIR=/var/log/berth

for bin in dbus-daemon dbus-send virtlogd libvirtd tini /usr/sbin/libvirt-dbus; do
  command -v "$bin" >/dev/null || die "$bin is missing: run scripts/provision.sh (Debian packages)"
done

# True when something accepts connections on the Unix socket $1.
sock_alive() {
  [ -S "$1" ] || return 1
  python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(1)
s.connect(sys.argv[1])
EOF
}

# Waits up to $2 tenths of a second for "$1" (a command) to succeed.
wait_for() {
  local i
  for ((i = 0; i < $2; i++)); do
    eval "$1" && return 0
    sleep 0.1
  done
  return 1
}

dbus_call() {
  dbus-send --system --print-reply --reply-timeout=2000 --dest=org.freedesktop.DBus \
    /org/freedesktop/DBus "org.freedesktop.DBus.$1" "${@:2}"
}

libvirt_dbus_alive() {
  dbus_call NameHasOwner string:org.libvirt 2>/dev/null | grep -q 'boolean true'
}

ensure_policy() {
  local want
  # One copy of the policy: scripts/install-service.sh installs the same file.
  want=$(cat "$(dirname "$0")/../systemd/berth-libvirt-dbus.conf")
  if [ ! -f "$POLICY" ] || [ "$(cat "$POLICY")" != "$want" ]; then
    mkdir -p "$(dirname "$POLICY")"
    printf '%s\n' "$want" >"$POLICY"
    log "installed $POLICY"
    return 0
  fi
  return 1
}

# qemu.conf: QEMU runs as root (taps and logs under berth's dirs); returns 0 when changed.
ensure_qemu_conf() {
  local changed=1 key
  for key in user group; do
    if ! grep -Eq "^\s*${key}\s*=\s*\"root\"" "$QEMU_CONF"; then
      sed -i -E "/^\s*${key}\s*=/d" "$QEMU_CONF"
      printf '%s = "root"\n' "$key" >>"$QEMU_CONF"
      changed=0
    fi
  done
  [ "$changed" -eq 0 ] && log "set user/group = \"root\" in $QEMU_CONF"
  # "file" would let QEMU write console files itself, past any cap. The default
  # is "logd", so only a line saying otherwise is replaced (changing it needs a
  # libvirtd restart, which this then does once).
  if grep -Eq '^\s*stdio_handler\s*=' "$QEMU_CONF" && ! grep -Eq '^\s*stdio_handler\s*=\s*"logd"' "$QEMU_CONF"; then
    sed -i -E '/^\s*stdio_handler\s*=/d' "$QEMU_CONF"
    printf 'stdio_handler = "logd"\n' >>"$QEMU_CONF"
    log "set stdio_handler = \"logd\" in $QEMU_CONF (console files go through virtlogd)"
    changed=0
  fi
  return "$changed"
}

# virtlogd.conf: berth's serial log cap, explicit; returns 0 when changed.
ensure_virtlogd_conf() {
  [[ "$SERIAL_LOG_MAX_SIZE" =~ ^[1-9][0-9]*$ ]] || die "BERTH_SERIAL_LOG_MAX_SIZE must be a positive number of bytes (0 would turn rotation off)"
  [[ "$SERIAL_LOG_BACKUPS" =~ ^[0-9]+$ ]] || die "BERTH_SERIAL_LOG_BACKUPS must be a number"
  local changed=1 key value
  for key in max_size max_backups; do
    value=$SERIAL_LOG_MAX_SIZE
    [ "$key" = max_backups ] && value=$SERIAL_LOG_BACKUPS
    if ! grep -Eq "^\s*${key}\s*=\s*${value}\s*$" "$VIRTLOGD_CONF"; then
      sed -i -E "/^\s*${key}\s*=/d" "$VIRTLOGD_CONF"
      printf '%s = %s\n' "$key" "$value" >>"$VIRTLOGD_CONF"
      changed=0
    fi
  done
  [ "$changed" -eq 0 ] && log "set max_size = $SERIAL_LOG_MAX_SIZE, max_backups = $SERIAL_LOG_BACKUPS in $VIRTLOGD_CONF"
  return "$changed"
}

with_systemd() {
  ensure_qemu_conf && systemctl restart libvirtd.service 2>/dev/null || true
  # virtlogd's reload re-executes it keeping every open log: running guests are untouched.
  ensure_virtlogd_conf && systemctl reload virtlogd.service 2>/dev/null || true
  systemctl start dbus.service virtlogd.socket libvirtd.socket libvirtd.service
  # libvirt-dbus is D-Bus activated as the libvirtdbus user (polkit grants it libvirt).
  dbus-send --system --print-reply --dest=org.libvirt /org/libvirt/QEMU \
    org.freedesktop.DBus.Properties.Get string:org.libvirt.Connect string:Version >/dev/null ||
    die "libvirt-dbus did not answer on the system bus"
}

start_dbus() {
  if sock_alive "$DBUS_SOCK"; then return 0; fi
  log "starting dbus-daemon --system"
  mkdir -p /run/dbus
  # A pid file left by a dead daemon makes dbus-daemon refuse to start.
  rm -f /run/dbus/pid "$DBUS_SOCK"
  dbus-daemon --system --fork
  wait_for "sock_alive $DBUS_SOCK" 50 || die "dbus-daemon did not come up"
}

start_virtlogd() {
  local conf_changed=$1
  if sock_alive "$VIRTLOGD_SOCK"; then
    [ "$conf_changed" -eq 0 ] || return 0
    # SIGUSR1: virtlogd re-executes itself with the new config and keeps every
    # open log and client, so running guests lose no console output.
    log "reloading virtlogd for the new virtlogd.conf"
    kill -USR1 "$(cat /run/virtlogd.pid)"
    wait_for "sock_alive $VIRTLOGD_SOCK" 50 || die "virtlogd did not come back after its reload"
    return 0
  fi
  log "starting virtlogd"
  rm -f /run/virtlogd.pid
  virtlogd -d
  wait_for "sock_alive $VIRTLOGD_SOCK" 50 || die "virtlogd did not come up"
}

start_libvirtd() {
  local conf_changed=$1
  if sock_alive "$LIBVIRT_SOCK"; then
    [ "$conf_changed" -eq 0 ] || return 0
    log "restarting libvirtd for the new qemu.conf"
    virsh -c qemu:///system list --all >/dev/null 2>&1 || true
    kill "$(cat /run/libvirtd.pid)" 2>/dev/null || true
    wait_for "! sock_alive $LIBVIRT_SOCK" 100 || die "libvirtd did not stop"
  fi
  log "starting libvirtd under tini -s"
  rm -f /run/libvirtd.pid
  # setsid: libvirtd must outlive the shell (and a Ctrl-C in it) that started it.
  setsid tini -s -- libvirtd >>"$LOGDIR/libvirtd.log" 2>&1 </dev/null &
  wait_for "sock_alive $LIBVIRT_SOCK" 150 || die "libvirtd did not come up; see $LOGDIR/libvirtd.log"
}

start_libvirt_dbus() {
  local policy_changed=$1
  if [ "$policy_changed" -eq 0 ]; then
    dbus_call ReloadConfig >/dev/null || die "could not reload the D-Bus config"
  fi
  if libvirt_dbus_alive; then return 0; fi
  log "starting libvirt-dbus --system"
  setsid /usr/sbin/libvirt-dbus --system >>"$LOGDIR/libvirt-dbus.log" 2>&1 </dev/null &
  wait_for libvirt_dbus_alive 100 || die "libvirt-dbus did not take org.libvirt; see $LOGDIR/libvirt-dbus.log"
}

if [ -d /run/systemd/system ]; then
  with_systemd
  exit 0
fi

mkdir -p "$LOGDIR"
conf_changed=1
ensure_qemu_conf && conf_changed=0
policy_changed=1
ensure_policy && policy_changed=0
virtlogd_changed=1
ensure_virtlogd_conf && virtlogd_changed=0
start_dbus
start_virtlogd "$virtlogd_changed"
start_libvirtd "$conf_changed"
start_libvirt_dbus "$policy_changed"
