#!/usr/bin/env bash
# Private Prosody 0.12 instance for xmpp-reports tests and benchmarks (the
# counterpart of scripts/ejabberd.sh; never the system's prosody service).
#
# Usage: scripts/prosody.sh start|stop|restart|status|register USER PASSWORD|env
#
#   start     render the config into the run dir and start `prosody --config FILE -F`
#             in the background (own process group), then wait until c2s, the
#             component port and proxy65 answer. Idempotent. Prosody must be
#             installed (scripts/deps.sh test installs it without starting the
#             system service).
#   stop      stop the instance started from this run dir (TERM, bounded wait, KILL).
#   restart   stop + start; the data dir (registered users, rosters) is kept.
#   status    exit 0 if running and ready, 2 if its process is alive but not ready,
#             1 if not running.
#   register  USER PASSWORD: create USER@$XR_PR_VHOST with prosodyctl (an existing
#             user gets PASSWORD: idempotent).
#   env       print the effective settings as shell assignments.
#
# Settings (env, defaults in brackets):
#   XR_RUN_DIR [<repo>/.run/prosody]  XR_PR_VHOST [example.com]
#   XR_PR_COMPONENT_DOMAIN [reports.example.com]  XR_PR_COMPONENT_SECRET [test-secret]
#   XR_PR_C2S_PORT [16222]  XR_PR_COMPONENT_PORT [16223]  XR_PR_PROXY65_PORT [16224]
#   XR_PR_PROXY65_ACL [true] (true = proxy65_acl allows the vhost's users and the
#             component; false = no proxy65_acl: Prosody's proxy65 then refuses components)
#   XR_PR_READ_SIZE [65536] network_default_read_size (Prosody's own default is 4096)
#   XR_PR_LOG_LEVEL [info]
#   XR_PR_START_TIMEOUT [30] seconds, XR_PR_STOP_TIMEOUT [15] seconds
#   XR_PR_TEMPLATE [scripts/prosody/prosody.test.cfg.lua.tmpl] config template
# For every command but start/restart, settings not given in the environment are taken
# from <run dir>/instance.env, written by the last start.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd -P)
TEMPLATE=${XR_PR_TEMPLATE:-$SCRIPT_DIR/prosody/prosody.test.cfg.lua.tmpl}
PROSODY=/usr/bin/prosody
PROSODYCTL=/usr/bin/prosodyctl

SETTINGS=(XR_PR_VHOST XR_PR_COMPONENT_DOMAIN XR_PR_COMPONENT_SECRET XR_PR_C2S_PORT
  XR_PR_COMPONENT_PORT XR_PR_PROXY65_PORT XR_PR_PROXY65_ACL XR_PR_READ_SIZE XR_PR_LOG_LEVEL)

log() { printf 'prosody.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

setup_run_dir() {
  RUN_DIR=${XR_RUN_DIR:-$REPO_DIR/.run/prosody}
  [[ $RUN_DIR == /* ]] || RUN_DIR=$PWD/$RUN_DIR
  [[ $1 == start || $1 == restart ]] && mkdir -p "$RUN_DIR"
  [[ -d $RUN_DIR ]] && RUN_DIR=$(cd "$RUN_DIR" && pwd -P)
  CONFIG=$RUN_DIR/prosody.cfg.lua
  DATA_DIR=$RUN_DIR/data
  PID_FILE=$RUN_DIR/launcher.pid # our setsid'ed process, which execs prosody: same pid
  INSTANCE_ENV=$RUN_DIR/instance.env
  CONSOLE_LOG=$RUN_DIR/console.log
}

load_recorded_settings() {
  [[ -f $INSTANCE_ENV ]] || return 0
  local line key
  while IFS= read -r line; do
    key=${line%%=*}
    [[ " ${SETTINGS[*]} " == *" $key "* ]] || continue
    [[ -z ${!key+x} ]] && eval "$key=${line#*=}" # written by us with printf %q
  done <"$INSTANCE_ENV"
  return 0
}

apply_defaults() {
  : "${XR_PR_VHOST:=example.com}"
  : "${XR_PR_COMPONENT_DOMAIN:=reports.example.com}"
  : "${XR_PR_COMPONENT_SECRET:=test-secret}"
  : "${XR_PR_C2S_PORT:=16222}"
  : "${XR_PR_COMPONENT_PORT:=16223}"
  : "${XR_PR_PROXY65_PORT:=16224}"
  : "${XR_PR_PROXY65_ACL:=true}"
  : "${XR_PR_READ_SIZE:=65536}"
  : "${XR_PR_LOG_LEVEL:=info}"
  : "${XR_PR_START_TIMEOUT:=30}"
  : "${XR_PR_STOP_TIMEOUT:=15}"
  local p
  for p in XR_PR_C2S_PORT XR_PR_COMPONENT_PORT XR_PR_PROXY65_PORT; do
    [[ ${!p} =~ ^[0-9]+$ ]] && ((${!p} > 0 && ${!p} < 65536)) || die "$p=${!p} is not a port number"
  done
  for p in XR_PR_START_TIMEOUT XR_PR_STOP_TIMEOUT XR_PR_READ_SIZE; do
    [[ ${!p} =~ ^[0-9]+$ ]] || die "$p=${!p} is not a number"
  done
  [[ $XR_PR_VHOST =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || die "bad XR_PR_VHOST: $XR_PR_VHOST (lowercase)"
  [[ $XR_PR_COMPONENT_DOMAIN =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || die "bad XR_PR_COMPONENT_DOMAIN: $XR_PR_COMPONENT_DOMAIN"
  [[ $XR_PR_COMPONENT_DOMAIN != "$XR_PR_VHOST" ]] || die "the component domain must not be the vhost"
  [[ $XR_PR_COMPONENT_SECRET =~ ^[[:print:]]+$ ]] || die "XR_PR_COMPONENT_SECRET must be printable and non-empty"
  case $XR_PR_PROXY65_ACL in true | false) ;; *) die "XR_PR_PROXY65_ACL must be true or false" ;; esac
  case $XR_PR_LOG_LEVEL in debug | info | warn | error) ;; *) die "XR_PR_LOG_LEVEL must be debug|info|warn|error" ;; esac
}

lua_str() { # escape for a Lua double-quoted string
  local s=${1//\\/\\\\}
  printf '%s' "${s//\"/\\\"}"
}

render_cfg() {
  [[ -f $TEMPLATE ]] || die "template missing: $TEMPLATE"
  local t acl
  t=$(<"$TEMPLATE")
  if [[ $XR_PR_PROXY65_ACL == true ]]; then
    acl="  -- the vhost's users and the component (without it proxy65 refuses components)"$'\n'"  proxy65_acl = { \"$XR_PR_VHOST\", \"$XR_PR_COMPONENT_DOMAIN\" }"
  else
    acl="  -- XR_PR_PROXY65_ACL=false: no proxy65_acl, so proxy65 serves local users only and refuses components"
  fi
  t=${t//\{\{XMPP_DOMAIN\}\}/$XR_PR_VHOST}
  t=${t//\{\{COMPONENT_DOMAIN\}\}/$XR_PR_COMPONENT_DOMAIN}
  t=${t//\{\{COMPONENT_SECRET\}\}/$(lua_str "$XR_PR_COMPONENT_SECRET")}
  t=${t//\{\{C2S_PORT\}\}/$XR_PR_C2S_PORT}
  t=${t//\{\{COMPONENT_PORT\}\}/$XR_PR_COMPONENT_PORT}
  t=${t//\{\{PROXY65_PORT\}\}/$XR_PR_PROXY65_PORT}
  t=${t//\{\{PROXY65_ACL\}\}/$acl}
  t=${t//\{\{READ_SIZE\}\}/$XR_PR_READ_SIZE}
  t=${t//\{\{LOG_LEVEL\}\}/$XR_PR_LOG_LEVEL}
  t=${t//\{\{RUN_DIR\}\}/$(lua_str "$RUN_DIR")}
  [[ $t != *'{{'* ]] || die "unrendered placeholder left in $TEMPLATE"
  printf '%s\n' "$t"
}

same_as_running() {
  [[ -f $CONFIG ]] && [[ $(render_cfg) == "$(<"$CONFIG")" ]]
}

write_config() {
  local t
  t=$(render_cfg)
  umask 077 # the secret is in it
  printf '%s\n' "$t" >"$CONFIG.tmp"
  mv -f "$CONFIG.tmp" "$CONFIG"
  { local k; for k in "${SETTINGS[@]}"; do printf '%s=%q\n' "$k" "${!k}"; done; } >"$INSTANCE_ENV"
  umask 022
}

read_pid() {
  local p=""
  [[ -f $PID_FILE ]] && read -r p <"$PID_FILE" 2>/dev/null || true
  [[ $p =~ ^[0-9]+$ ]] && printf '%s\n' "$p"
  return 0
}

# Alive, not a zombie, and ours: its command line names our config (guards against pid reuse).
# While a process is in execve (the launcher becoming prosody, env becoming lua) the kernel
# shows an empty command line for a moment; that is still ours, unless it is a kernel thread
# (also empty, parent 2).
our_pid() {
  local p st cmd
  p=$(read_pid)
  [[ -n $p ]] || return 0
  { read -r st <"/proc/$p/stat"; } 2>/dev/null || return 0
  st=${st##*) }
  [[ ${st:0:1} != Z ]] || return 0
  cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || return 0
  if [[ -z $cmd ]]; then
    st=${st#* }
    [[ ${st%% *} != 2 ]] && printf '%s\n' "$p"
    return 0
  fi
  [[ $cmd == *"$CONFIG"* ]] && printf '%s\n' "$p"
  return 0
}

is_running() { [[ -n $(our_pid) ]]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ready_now() { port_open "$XR_PR_C2S_PORT" && port_open "$XR_PR_COMPONENT_PORT" && port_open "$XR_PR_PROXY65_PORT"; }

wait_ready() { # seconds
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    is_running || return 2
    ready_now && return 0
    sleep 0.2
  done
  return 1
}

show_logs() {
  log "---- last lines of $CONSOLE_LOG"
  tail -n 20 "$CONSOLE_LOG" >&2 2>/dev/null || true
  log "---- errors in $RUN_DIR/prosody.log"
  grep -E '\b(error|warn)\b' "$RUN_DIR/prosody.log" 2>/dev/null | tail -n 15 >&2 || true
}

print_ports() {
  cat <<EOF
prosody ready, run dir $RUN_DIR
  vhost           $XR_PR_VHOST
  component       $XR_PR_COMPONENT_DOMAIN (secret from XR_PR_COMPONENT_SECRET)
  c2s             127.0.0.1:$XR_PR_C2S_PORT  (plain TCP, no STARTTLS required)
  component port  127.0.0.1:$XR_PR_COMPONENT_PORT
  proxy65         proxy.$XR_PR_VHOST at 127.0.0.1:$XR_PR_PROXY65_PORT (proxy65_acl: $XR_PR_PROXY65_ACL)
EOF
}

cmd_start() {
  [[ -x $PROSODY ]] || die "$PROSODY not found: run scripts/deps.sh test (it installs Debian's prosody without starting its service)"
  if is_running && ! same_as_running; then
    log "running with other settings or an older template: restarting it"
    cmd_stop
  fi
  if is_running; then
    if wait_ready "$XR_PR_START_TIMEOUT"; then
      log "already running (pid $(our_pid))"
      print_ports
      return 0
    fi
    log "alive but not ready: restarting it"
    cmd_stop
  fi
  rm -f "$PID_FILE"
  local p
  for p in "$XR_PR_C2S_PORT" "$XR_PR_COMPONENT_PORT" "$XR_PR_PROXY65_PORT"; do
    port_open "$p" && die "port 127.0.0.1:$p is already in use by another process (set XR_PR_*_PORT)"
  done
  mkdir -p "$DATA_DIR" "$RUN_DIR/certs"
  chmod 700 "$DATA_DIR"
  write_config
  local t0=$SECONDS
  printf '\n==== %s start\n' "$(date '+%F %T')" >>"$CONSOLE_LOG"
  # setsid: own session and process group; the launcher writes its pid and becomes prosody.
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' xr-prosody "$PID_FILE" \
    "$PROSODY" --config "$CONFIG" -F </dev/null >>"$CONSOLE_LOG" 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s $PID_FILE ]] && break; sleep 0.1; done
  local rc=0
  wait_ready "$XR_PR_START_TIMEOUT" || rc=$?
  if ((rc != 0)); then
    if ((rc == 2)); then log "prosody exited during start"; else log "prosody not ready after ${XR_PR_START_TIMEOUT}s"; fi
    show_logs
    cmd_stop >/dev/null 2>&1 || true
    exit 1
  fi
  log "started in $((SECONDS - t0))s (pid $(our_pid))"
  print_ports
}

cmd_stop() {
  local pid
  pid=$(our_pid)
  if [[ -z $pid ]]; then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + XR_PR_STOP_TIMEOUT))
  while [[ -n $(our_pid) ]] && ((SECONDS < deadline)); do sleep 0.1; done
  if [[ -n $(our_pid) ]]; then
    log "still alive after ${XR_PR_STOP_TIMEOUT}s: killing its process group $pid"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while [[ -n $(our_pid) ]] && ((SECONDS < deadline)); do sleep 0.1; done
    [[ -z $(our_pid) ]] || die "could not stop pid $pid"
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  if ! is_running; then log "not running"; return 1; fi
  if ready_now; then log "running and ready (pid $(our_pid))"; print_ports; return 0; fi
  log "process alive (pid $(our_pid)) but not ready"
  return 2
}

cmd_register() {
  (($# == 2)) || die "usage: $0 register USER PASSWORD"
  local user=$1 password=$2 out
  [[ -n $user && $user != *@* && -n $password ]] || die "register: USER is the local part, PASSWORD non-empty"
  [[ -f $CONFIG ]] || die "no config in $RUN_DIR; run: $0 start"
  # prosodyctl writes the account file in the data dir; the running server reads it at login.
  # (it would prompt for the password if not given; the password is on its command line, as
  # for ejabberdctl: test accounts only.)
  if ! out=$(timeout 60 "$PROSODYCTL" --config "$CONFIG" register "$user" "$XR_PR_VHOST" "$password" </dev/null 2>&1); then
    die "prosodyctl register $user@$XR_PR_VHOST failed: $out"
  fi
  log "registered $user@$XR_PR_VHOST"
}

cmd_env() {
  printf 'XR_RUN_DIR=%q\n' "$RUN_DIR"
  local k
  for k in "${SETTINGS[@]}"; do printf '%s=%q\n' "$k" "${!k:-}"; done
}

main() {
  local cmd=${1:-}
  [[ -n $cmd ]] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
  shift
  setup_run_dir "$cmd"
  case $cmd in start | restart) ;; *) load_recorded_settings ;; esac
  apply_defaults
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    register) cmd_register "$@" ;;
    env) cmd_env ;;
    *) die "unknown command: $cmd (start|stop|restart|status|register|env)" ;;
  esac
}

main "$@"
