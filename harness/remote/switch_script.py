"""The on-host switch script (POSIX sh), uploaded as ``kist-switch`` by ``deploy``.

Kept as a Python string so it ships inside the wheel with no package-data entry.
"""

SCRIPT = r"""#!/bin/sh
# kist-switch: run ON the relay host, detached from the SSH session (setsid), so a dropped
# connection cannot stop it half-way. It moves tor between two complete releases:
#   current -> releases/ID is swapped with one rename (atomic), then tor is restarted and
#   checked; if tor does not come up, the same rename puts the old release back.
# state (key=value, replaced by rename) says which phase the host is in.
# Usage: kist-switch activate ID | rollback | abandon ID | recover   Config: ./host.env
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
    dropin="${SYSTEMD_DIR:-/etc/systemd/system}/$UNIT.service.d"
    if [ "$(basename "$(readlink current)")" = stock ]; then
      rm -f "$dropin/kist-harness.conf"   # the host's own tor: the unit exactly as packaged
    else
      # only ExecStart is replaced: the unit's own ExecStartPre steps (e.g. Debian's creation
      # of /run/tor) still run; the deploy has already run --verify-config on this release
      mkdir -p "$dropin" &&
        printf '[Service]\nExecStart=\nExecStart=%s --RunAsDaemon 0\n' \
          "$(tor_cmd)" > "$dropin/kist-harness.conf.new" &&
        mv -f "$dropin/kist-harness.conf.new" "$dropin/kist-harness.conf" || return 1
    fi
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

prev_of() { basename "$(readlink previous 2>/dev/null || echo stock)"; }
state_of() { sed -n "s/^$1=//p" state 2>/dev/null; }

# switch_to TO PHASE_OK PREVIOUS_OK [STATE...]: run release TO; on success `previous` names
# PREVIOUS_OK; if TO does not come up, current and previous go back to what they were
switch_to() {
  to=$1 ok=$2 prev_ok=$3; shift 3
  from=$cur keep=$(prev_of)
  set_state phase=switching from="$from" to="$to" keep="$keep"
  link previous "$prev_ok" && link current "$to" || { log "cannot relink"; exit 3; }
  if restart "$to"; then
    set_state "phase=$ok" current="$to" previous="$prev_ok" prior="$keep" "$@"; return 0
  fi
  log "tor failed on release $to; going back to $from"
  link current "$from"; link previous "$keep"
  if restart "$from"; then set_state phase=rolled-back current="$from" previous="$keep" failed="$to"
  else set_state phase=broken current="$from" previous="$keep" failed="$to"; fi
  return 3
}

cur=$(basename "$(readlink current 2>/dev/null || echo stock)")
case "${1:-}" in
  # the release we come from becomes previous
  activate) lock; [ -d "releases/${2:-}" ] || { log "no release ${2:-}"; exit 2; }
            switch_to "$2" active "$cur"; exit $? ;;
  # swap current and previous (a second rollback undoes the first)
  rollback) lock; switch_to "$(prev_of)" rolled-back "$cur"; exit $? ;;
  # release ID failed its checks after activate: back to previous, and previous back to
  # what it named before ID came, so no later rollback returns to ID
  abandon)  lock; [ "$cur" = "${2:-}" ] || { log "current is $cur, not ${2:-?}"; exit 2; }
            prior=$(state_of prior)
            switch_to "$(prev_of)" rolled-back "${prior:-stock}" failed="$2"; exit $? ;;
  recover)  lock; from=$(state_of from); keep=$(state_of keep)
            [ -n "$from" ] || exit 0
            link current "$from"; [ -z "$keep" ] || link previous "$keep"
            if restart "$from"; then phase=rolled-back; else phase=broken; fi
            set_state phase=$phase current="$from" previous="${keep:-$(prev_of)}"; exit 0 ;;
  *) echo "usage: $0 activate ID | rollback | abandon ID | recover" >&2; exit 2 ;;
esac
"""
