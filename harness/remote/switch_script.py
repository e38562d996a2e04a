"""The on-host switch script (POSIX sh), uploaded as ``kist-switch`` by ``deploy``.

Kept as a Python string so it ships inside the wheel with no package-data entry.
"""

SCRIPT = r"""#!/bin/sh
# kist-switch: run ON the relay host, detached from the SSH session (setsid), so a dropped
# connection cannot stop it half-way. It moves tor between two complete releases:
#   current -> releases/ID is swapped with one rename (atomic), then tor is restarted and
#   checked; if tor does not come up, the same rename puts the old release back.
# state (key=value, replaced by rename) says which phase the host is in.
# Usage: kist-switch activate ID | rollback | recover      Config: ./host.env
set -u
cd "$(dirname "$0")" || exit 2
. ./host.env

log() { echo "$(date -u +%H:%M:%S) $*"; }
set_state() { printf '%s\n' "$@" > state.new && mv -f state.new state; }
link() { ln -sfn "releases/$2" "$1.new" && mv -Tf "$1.new" "$1"; }

tor_cmd() {
  echo "$PWD/current/tor --defaults-torrc $PWD/current/defaults-torrc -f $PWD/current/torrc"
}

stop_tor() {
  if [ "$RUN_MODE" = systemd ]; then systemctl stop "$UNIT"; return; fi
  [ -f "$PID_FILE" ] || return 0
  pid=$(cat "$PID_FILE" 2>/dev/null)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; return 0; }
  kill -TERM "$pid"; i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt $((WAIT_S * 5)) ] && { kill -KILL "$pid"; sleep 1; break; }
    sleep 0.2
  done
  rm -f "$PID_FILE"
}

start_tor() {
  if [ "$RUN_MODE" = systemd ]; then
    mkdir -p "/etc/systemd/system/$UNIT.service.d"
    # only ExecStart is replaced: the unit's own ExecStartPre steps (e.g. Debian's creation
    # of /run/tor) still run; the deploy has already run --verify-config on this release
    printf '[Service]\nExecStart=\nExecStart=%s --RunAsDaemon 0\n' \
      "$(tor_cmd)" > "/etc/systemd/system/$UNIT.service.d/kist-harness.conf.new" &&
      mv -f "/etc/systemd/system/$UNIT.service.d/kist-harness.conf.new" \
        "/etc/systemd/system/$UNIT.service.d/kist-harness.conf"
    systemctl daemon-reload && systemctl start "$UNIT"; return
  fi
  # shellcheck disable=SC2046
  $(tor_cmd) --RunAsDaemon 1 --PidFile "$PID_FILE" --Log "notice file $PWD/tor.log"
}

control_up() {
  if [ -n "$CONTROL_SOCKET" ]; then [ -S "$CONTROL_SOCKET" ]; return; fi
  hex=$(printf '%04X' "$CONTROL_PORT")
  grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp
}

tor_alive() {
  if [ "$RUN_MODE" = systemd ]; then systemctl is-active -q "$UNIT"; return; fi
  # a daemonising tor writes its pid file a moment after the parent returns
  [ -s "$PID_FILE" ] || return 2
  kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

# restart onto whatever current points at; 0 if tor runs and (when it has one) listens
restart() {
  stop_tor
  start_tor || { log "tor did not start"; return 1; }
  i=0
  while [ $i -lt $((WAIT_S * 5)) ]; do
    tor_alive; alive=$?
    [ $alive = 1 ] && { log "tor exited"; return 1; }
    [ $alive = 2 ] && { i=$((i + 1)); sleep 0.2; continue; }
    if [ "$1" = stock ] || control_up; then return 0; fi
    i=$((i + 1)); sleep 0.2
  done
  log "control endpoint did not come up within $WAIT_S s"; return 1
}

lock() {
  if ! mkdir lock 2>/dev/null; then
    holder=$(cat lock/pid 2>/dev/null)
    if [ -n "$holder" ] && kill -0 "$holder" 2>/dev/null; then log "busy: pid $holder"; exit 75; fi
    rm -rf lock; mkdir lock || exit 75
  fi
  echo $$ > lock/pid
  trap 'rm -rf lock' EXIT
}

switch_to() {  # switch_to TO FROM PHASE_OK
  set_state phase=switching from="$2" to="$1"
  link previous "$2" && link current "$1" || { log "cannot relink"; exit 3; }
  if restart "$1"; then set_state "phase=$3" current="$1" previous="$2"; return 0; fi
  log "tor failed on release $1; going back to $2"
  link current "$2"; link previous "$1"
  if restart "$2"; then set_state phase=rolled-back current="$2" previous="$1" failed="$1"
  else set_state phase=broken current="$2" previous="$1" failed="$1"; fi
  return 3
}

cur=$(basename "$(readlink current 2>/dev/null || echo stock)")
case "${1:-}" in
  activate) lock; [ -d "releases/$2" ] || { log "no release $2"; exit 2; }
            switch_to "$2" "$cur" active; exit $? ;;
  rollback) lock; prev=$(basename "$(readlink previous 2>/dev/null || echo stock)")
            switch_to "$prev" "$cur" rolled-back; exit $? ;;
  recover)  lock; from=$(sed -n 's/^from=//p' state)
            [ -n "$from" ] || exit 0
            link current "$from"; restart "$from" && set_state phase=rolled-back current="$from" \
              || set_state phase=broken current="$from"; exit 0 ;;
  *) echo "usage: $0 activate ID | rollback | recover" >&2; exit 2 ;;
esac
"""
