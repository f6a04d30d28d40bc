#!/usr/bin/env bash
# Private ejabberd instance for xmpp-reports tests, benchmarks and the demo.
#
# Usage: scripts/ejabberd.sh start|stop|restart|status|register USER PASSWORD|ctl ARGS...|env
#
#   start     install ejabberd if missing, render the config into the run dir, start
#             ejabberd in the background (foreground mode, own process group) and wait
#             until c2s, the component port and the HTTP API answer. Idempotent.
#   stop      stop the instance started from this run dir (TERM, bounded wait, KILL).
#   restart   stop + start; the mnesia spool (registered users) is kept.
#   status    exit 0 if running and ready, 2 if its process is alive but not ready,
#             1 if not running.
#   register  USER PASSWORD: create USER@$XR_EJ_VHOST through the HTTP API. If the
#             user exists, its password is set to PASSWORD (so: idempotent).
#   ctl       run ejabberdctl against this instance, e.g. `ctl registered_users example.com`.
#   env       print the effective settings as shell assignments.
#
# Settings (env, defaults in brackets):
#   XR_RUN_DIR [<repo>/.run/ejabberd]  XR_EJ_VHOST [example.com]
#   XR_EJ_COMPONENT_DOMAIN [reports.example.com]  XR_EJ_COMPONENT_SECRET [test-secret]
#   XR_EJ_C2S_PORT [15222]  XR_EJ_COMPONENT_PORT [15223]  XR_EJ_HTTP_PORT [15224]
#   XR_EJ_DIST_PORT [15225]  XR_EJ_PROXY65_PORT [15226]  XR_EJ_NODE [xmppreports@localhost]
#   XR_EJ_SHAPER [none] (none | debian = c2s shaper of 3000 B/s like Debian's default)
#   XR_EJ_STARTTLS [false] (false | true = c2s offers STARTTLS | required; needs XR_EJ_CERTFILE)
#   XR_EJ_CERTFILE [] PEM file with the server certificate, its key and chain (copied into the
#             run dir as certs.pem; e.g. a cert for `localhost` from a test CA, for Dino)
#   XR_EJ_COMPONENT_TLS [false] (false | true = the component listener speaks direct TLS,
#             `tls: true` with XR_EJ_CERTFILE as its certfile; the component then uses xmpps://)
#   XR_EJ_DOMAIN_BALANCING [] TYPE:N = domain_balancing for the component domain, e.g.
#             source:2 (type random|source|destination|bare_source|bare_destination, N =
#             component_number, the number of component connections); empty = none
#   XR_EJ_LISTEN_IP [127.0.0.1] address of the c2s, component and HTTP listeners ("::" = every
#             address, IPv4 too; e.g. in the network lab, where 127.0.0.1 alone is unreachable)
#   XR_EJ_PROXY65_IP [127.0.0.1] address mod_proxy65 listens on
#   XR_EJ_PROXY65_HOST [127.0.0.1] the host mod_proxy65 tells clients to connect to (an address or name)
# An ejabberd cluster across hosts (all empty/127.0.0.1 by default: a lone node on loopback):
#   XR_EJ_DIST_IP [127.0.0.1] IPv4 address the Erlang distribution listens on, on XR_EJ_DIST_PORT
#             (fixed: inet_dist_listen_min = max = that port, and -erl_epmd_port: no epmd; every
#             node of the cluster uses the same port). Name the node on it: XR_EJ_NODE=ej1@192.0.2.10
#   XR_EJ_COOKIE_FILE [] a file holding the cluster's own Erlang cookie; copied into the run dir as
#             .erlang.cookie (0400) and found there through HOME (never on a command line). Set, the
#             node runs as the current user (Debian's su would reset HOME to the shared cookie's)
#   XR_EJ_JOIN [] a node of an existing cluster (name@address): after start, `ejabberdctl
#             join_cluster` it unless already in its cluster (mnesia then copies users etc.)
#   XR_EJ_FAILOVER [false] (false | true = load mod_xr_failover, compiled from
#             scripts/ejabberd/mod_xr_failover.erl into the run dir: with XR_EJ_DOMAIN_BALANCING,
#             stanzas for a slot whose component connection is gone go to a live connection)
#   XR_EJ_START_TIMEOUT [60] seconds, XR_EJ_STOP_TIMEOUT [20] seconds
#   XR_EJ_TEMPLATE [scripts/ejabberd/ejabberd.test.yml.tmpl] config template
# For every command but start/restart, settings not given in the environment are taken
# from <run dir>/instance.env, written by the last start.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd -P)
TEMPLATE=${XR_EJ_TEMPLATE:-$SCRIPT_DIR/ejabberd/ejabberd.test.yml.tmpl}
SYSTEM_CTL=/usr/sbin/ejabberdctl

SETTINGS=(XR_EJ_VHOST XR_EJ_COMPONENT_DOMAIN XR_EJ_COMPONENT_SECRET XR_EJ_C2S_PORT
  XR_EJ_COMPONENT_PORT XR_EJ_HTTP_PORT XR_EJ_DIST_PORT XR_EJ_PROXY65_PORT XR_EJ_NODE
  XR_EJ_SHAPER XR_EJ_STARTTLS XR_EJ_CERTFILE XR_EJ_COMPONENT_TLS XR_EJ_DOMAIN_BALANCING XR_EJ_RUN_AS
  XR_EJ_LISTEN_IP XR_EJ_PROXY65_IP XR_EJ_PROXY65_HOST XR_EJ_DIST_IP XR_EJ_COOKIE_FILE XR_EJ_JOIN XR_EJ_FAILOVER)

log() { printf 'ejabberd.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- settings

setup_run_dir() {
  RUN_DIR=${XR_RUN_DIR:-$REPO_DIR/.run/ejabberd}
  [[ $RUN_DIR == /* ]] || RUN_DIR=$PWD/$RUN_DIR
  # only start creates it; other commands on a missing dir find nothing running
  [[ $1 == start || $1 == restart ]] && mkdir -p "$RUN_DIR"
  [[ -d $RUN_DIR ]] && RUN_DIR=$(cd "$RUN_DIR" && pwd -P)
  LOG_DIR=$RUN_DIR/logs
  SPOOL_DIR=$RUN_DIR/spool
  UPLOAD_DIR=$RUN_DIR/upload
  CONFIG=$RUN_DIR/ejabberd.yml
  CTL_CONFIG=$RUN_DIR/ejabberdctl.cfg
  LAUNCHER_PID_FILE=$RUN_DIR/launcher.pid # our setsid'ed process: session + group leader
  BEAM_PID_FILE=$RUN_DIR/ejabberd.pid     # written by ejabberd itself (EJABBERD_PID_PATH)
  INSTANCE_ENV=$RUN_DIR/instance.env
  CONSOLE_LOG=$LOG_DIR/console.log
}

# Values recorded by the last start, for settings not given in the environment.
load_recorded_settings() {
  [[ -f $INSTANCE_ENV ]] || return 0
  local line key
  while IFS= read -r line; do
    key=${line%%=*}
    [[ " ${SETTINGS[*]} " == *" $key "* ]] || continue
    if [[ -z ${!key+x} ]]; then
      eval "$key=${line#*=}" # written by us with printf %q
    fi
  done <"$INSTANCE_ENV"
}

apply_defaults() {
  : "${XR_EJ_VHOST:=example.com}"
  : "${XR_EJ_COMPONENT_DOMAIN:=reports.example.com}"
  : "${XR_EJ_COMPONENT_SECRET:=test-secret}"
  : "${XR_EJ_C2S_PORT:=15222}"
  : "${XR_EJ_COMPONENT_PORT:=15223}"
  : "${XR_EJ_HTTP_PORT:=15224}"
  : "${XR_EJ_DIST_PORT:=15225}"
  : "${XR_EJ_PROXY65_PORT:=15226}"
  : "${XR_EJ_NODE:=xmppreports@localhost}"
  : "${XR_EJ_SHAPER:=none}"
  : "${XR_EJ_STARTTLS:=false}"
  : "${XR_EJ_CERTFILE:=}"
  : "${XR_EJ_COMPONENT_TLS:=false}"
  : "${XR_EJ_DOMAIN_BALANCING:=}"
  : "${XR_EJ_LISTEN_IP:=127.0.0.1}"
  : "${XR_EJ_PROXY65_IP:=127.0.0.1}"
  : "${XR_EJ_PROXY65_HOST:=127.0.0.1}"
  : "${XR_EJ_DIST_IP:=127.0.0.1}"
  : "${XR_EJ_COOKIE_FILE:=}"
  : "${XR_EJ_JOIN:=}"
  : "${XR_EJ_FAILOVER:=false}"
  : "${XR_EJ_START_TIMEOUT:=60}"
  : "${XR_EJ_STOP_TIMEOUT:=20}"

  local p
  for p in XR_EJ_C2S_PORT XR_EJ_COMPONENT_PORT XR_EJ_HTTP_PORT XR_EJ_DIST_PORT XR_EJ_PROXY65_PORT; do
    [[ ${!p} =~ ^[0-9]+$ ]] && ((${!p} > 0 && ${!p} < 65536)) || die "$p=${!p} is not a port number"
  done
  for p in XR_EJ_START_TIMEOUT XR_EJ_STOP_TIMEOUT; do
    [[ ${!p} =~ ^[0-9]+$ ]] || die "$p=${!p} is not a number of seconds"
  done
  [[ $XR_EJ_VHOST =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || die "bad XR_EJ_VHOST: $XR_EJ_VHOST (lowercase)"
  [[ $XR_EJ_COMPONENT_DOMAIN =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || die "bad XR_EJ_COMPONENT_DOMAIN: $XR_EJ_COMPONENT_DOMAIN (lowercase)"
  [[ $XR_EJ_COMPONENT_DOMAIN != "$XR_EJ_VHOST" ]] || die "the component domain must not be the vhost"
  [[ $XR_EJ_FAILOVER == true || $XR_EJ_FAILOVER == false ]] || die "XR_EJ_FAILOVER must be true or false, got $XR_EJ_FAILOVER"
  [[ $XR_EJ_NODE =~ ^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$ ]] || die "bad XR_EJ_NODE: $XR_EJ_NODE (name@host)"
  [[ $XR_EJ_COMPONENT_SECRET =~ ^[[:print:]]+$ ]] || die "XR_EJ_COMPONENT_SECRET must be printable and non-empty"
  for p in XR_EJ_LISTEN_IP XR_EJ_PROXY65_IP; do
    [[ ${!p} =~ ^[0-9a-fA-F.:]+$ ]] || die "$p=${!p} is not an IP address"
  done
  [[ $XR_EJ_PROXY65_HOST =~ ^[A-Za-z0-9.:-]+$ ]] || die "XR_EJ_PROXY65_HOST=$XR_EJ_PROXY65_HOST is not an address or host name"
  [[ $XR_EJ_DIST_IP =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
    die "XR_EJ_DIST_IP=$XR_EJ_DIST_IP is not an IPv4 address"
  [[ -z $XR_EJ_JOIN || $XR_EJ_JOIN =~ ^[A-Za-z0-9_-]+@[A-Za-z0-9.-]+$ ]] || die "bad XR_EJ_JOIN: $XR_EJ_JOIN (name@host)"
  [[ -z $XR_EJ_JOIN || $XR_EJ_JOIN != "$XR_EJ_NODE" ]] || die "XR_EJ_JOIN must name another node than XR_EJ_NODE"
  if [[ -n $XR_EJ_COOKIE_FILE ]]; then
    [[ $XR_EJ_COOKIE_FILE == /* ]] || XR_EJ_COOKIE_FILE=$PWD/$XR_EJ_COOKIE_FILE
    [[ -r $XR_EJ_COOKIE_FILE ]] || die "XR_EJ_COOKIE_FILE=$XR_EJ_COOKIE_FILE is not a readable file"
    grep -qE '^[A-Za-z0-9]{16,255}$' "$XR_EJ_COOKIE_FILE" ||
      die "XR_EJ_COOKIE_FILE must hold one line of 16 to 255 letters and digits"
  fi
  case $XR_EJ_SHAPER in none | debian) ;; *) die "XR_EJ_SHAPER must be none or debian" ;; esac
  [[ -z $XR_EJ_DOMAIN_BALANCING || $XR_EJ_DOMAIN_BALANCING =~ ^(random|source|destination|bare_source|bare_destination):([2-9]|[1-9][0-9]+)$ ]] ||
    die "XR_EJ_DOMAIN_BALANCING must be TYPE:N (e.g. source:2; N >= 2), got $XR_EJ_DOMAIN_BALANCING"
  case $XR_EJ_STARTTLS in false | true | required) ;; *) die "XR_EJ_STARTTLS must be false, true or required" ;; esac
  if [[ $XR_EJ_STARTTLS != false ]]; then
    [[ -n $XR_EJ_CERTFILE ]] || die "XR_EJ_STARTTLS=$XR_EJ_STARTTLS needs XR_EJ_CERTFILE (PEM with certificate and key)"
  fi
  case $XR_EJ_COMPONENT_TLS in false | true) ;; *) die "XR_EJ_COMPONENT_TLS must be false or true" ;; esac
  if [[ $XR_EJ_COMPONENT_TLS == true ]]; then
    [[ -n $XR_EJ_CERTFILE ]] || die "XR_EJ_COMPONENT_TLS=true needs XR_EJ_CERTFILE (PEM with certificate and key)"
  fi
  if [[ -n $XR_EJ_CERTFILE ]]; then
    [[ $XR_EJ_CERTFILE == /* ]] || XR_EJ_CERTFILE=$PWD/$XR_EJ_CERTFILE
    # (only start reads it: stop and status still work once a test's certificate is gone)
    [[ ${CMD:-} != start && ${CMD:-} != restart ]] || [[ -r $XR_EJ_CERTFILE ]] || die "XR_EJ_CERTFILE=$XR_EJ_CERTFILE is not a readable file"
  fi
}

# ---------------------------------------------------------------- installation / ctl

as_root() {
  if ((EUID == 0)); then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

ensure_installed() {
  [[ -x $SYSTEM_CTL ]] && return 0
  log "ejabberd is not installed: installing the Debian package"
  export DEBIAN_FRONTEND=noninteractive
  # (apt's output goes to stderr: stdout is for the port summary)
  if ! as_root apt-get install -y -q ejabberd >&2; then
    as_root apt-get update -q >&2 || die "apt-get update failed (are we root?)"
    as_root apt-get install -y -q ejabberd >&2 || die "apt-get install ejabberd failed"
  fi
  [[ -x $SYSTEM_CTL ]] || die "$SYSTEM_CTL still missing after installing ejabberd"
}

# Debian's ejabberdctl, run as root, su's to the `ejabberd` user (HOME=/var/lib/ejabberd,
# where the Erlang cookie lives), and refuses to run for any other user. So:
#   root, and the user `ejabberd` can write the run dir  -> Debian's ejabberdctl as is;
#   the `ejabberd` user itself                           -> Debian's ejabberdctl as is;
#   otherwise (a run dir under /root, a non-root user)   -> a copy with INSTALLUSER
#       emptied, which runs everything as the current user.
choose_run_as() {
  if [[ -n $XR_EJ_COOKIE_FILE ]]; then
    # Debian's ejabberdctl su's to `ejabberd`, which resets HOME to /var/lib/ejabberd and
    # its cookie, shared with every other node of that user: our own cookie needs our HOME.
    ((EUID == 0)) && chown -R "$(id -u):$(id -g)" "$RUN_DIR"
    XR_EJ_RUN_AS=self
  elif [[ $(id -un) == ejabberd ]]; then
    XR_EJ_RUN_AS=ejabberd
  elif ((EUID == 0)) && id ejabberd >/dev/null 2>&1; then
    chown -R ejabberd: "$RUN_DIR"
    if su -s /bin/sh -c 'test -d "$0" && test -w "$0" && test -x "$0"' ejabberd "$RUN_DIR" 2>/dev/null; then
      XR_EJ_RUN_AS=ejabberd
    else
      log "the ejabberd user cannot reach $RUN_DIR: running ejabberd as $(id -un)"
      chown -R "$(id -u):$(id -g)" "$RUN_DIR"
      XR_EJ_RUN_AS=self
    fi
  else
    XR_EJ_RUN_AS=self
  fi
}

ctl_path() {
  if [[ ${XR_EJ_RUN_AS:-ejabberd} == ejabberd ]]; then
    printf '%s\n' "$SYSTEM_CTL"
  else
    local copy=$RUN_DIR/ejabberdctl
    if [[ ! -x $copy || $SYSTEM_CTL -nt $copy ]]; then
      sed 's/^INSTALLUSER=ejabberd$/INSTALLUSER=/' "$SYSTEM_CTL" >"$copy.tmp"
      grep -q '^INSTALLUSER=$' "$copy.tmp" || die "cannot patch $SYSTEM_CTL (INSTALLUSER line not found)"
      chmod 755 "$copy.tmp"
      mv -f "$copy.tmp" "$copy"
    fi
    printf '%s\n' "$copy"
  fi
}

ctl_args() {
  printf '%s\n' --config-dir "$RUN_DIR" --config "$CONFIG" --ctl-config "$CTL_CONFIG" \
    --logs "$LOG_DIR" --spool "$SPOOL_DIR" --node "$XR_EJ_NODE"
}

# runs "$@" (VAR=value... cmd) with HOME at the run dir when the node has a cookie of its own
# there: Erlang reads $HOME/.erlang.cookie (server and ejabberdctl alike).
ctl_home() {
  if [[ -f $RUN_DIR/.erlang.cookie ]]; then env HOME="$RUN_DIR" "$@"; else env "$@"; fi
}

# ejabberdctl against this instance (status, register, registered_users, ...)
run_ctl() {
  local ctl args
  ctl=$(ctl_path)
  mapfile -t args < <(ctl_args)
  ctl_home SCRIPT=$SYSTEM_CTL timeout 60 "$ctl" "${args[@]}" "$@" 2> >(grep -v 'not recommended to run ejabberd as root' >&2)
}

# ---------------------------------------------------------------- rendering

yaml_dq() { # escape for a YAML double-quoted scalar
  local s=${1//\\/\\\\}
  printf '%s' "${s//\"/\\\"}"
}

render_yaml() { # the rendered ejabberd.yml on stdout
  [[ -f $TEMPLATE ]] || die "template missing: $TEMPLATE"
  local t shaper_rule
  t=$(<"$TEMPLATE")
  if [[ $XR_EJ_SHAPER == debian ]]; then
    shaper_rule="  c2s_shaper: normal      # XR_EJ_SHAPER=debian (Debian: {none: admin, normal: all})"
  else
    shaper_rule="  c2s_shaper: none        # XR_EJ_SHAPER=none"
  fi
  t=${t//\{\{XMPP_DOMAIN\}\}/$XR_EJ_VHOST}
  t=${t//\{\{COMPONENT_DOMAIN\}\}/$XR_EJ_COMPONENT_DOMAIN}
  t=${t//\{\{COMPONENT_SECRET\}\}/$(yaml_dq "$XR_EJ_COMPONENT_SECRET")}
  t=${t//\{\{C2S_PORT\}\}/$XR_EJ_C2S_PORT}
  t=${t//\{\{COMPONENT_PORT\}\}/$XR_EJ_COMPONENT_PORT}
  t=${t//\{\{HTTP_PORT\}\}/$XR_EJ_HTTP_PORT}
  t=${t//\{\{PROXY65_PORT\}\}/$XR_EJ_PROXY65_PORT}
  t=${t//\{\{LISTEN_IP\}\}/$XR_EJ_LISTEN_IP}
  t=${t//\{\{PROXY65_IP\}\}/$XR_EJ_PROXY65_IP}
  t=${t//\{\{PROXY65_HOST\}\}/$XR_EJ_PROXY65_HOST}
  t=${t//\{\{RUN_DIR\}\}/$(yaml_dq "$RUN_DIR")}
  t=${t//\{\{C2S_SHAPER_RULE\}\}/$shaper_rule}
  # TLS: nothing at all unless XR_EJ_CERTFILE/XR_EJ_STARTTLS say so (the default output is unchanged).
  local certfiles="" starttls=false starttls_required=false
  if [[ -n $XR_EJ_CERTFILE ]]; then
    # its digest in the config: a new certificate makes a running instance restart
    local digest
    digest=$(sha256sum "$XR_EJ_CERTFILE" | cut -c1-16)
    certfiles=$'\n'"## XR_EJ_CERTFILE (sha256 $digest…), copied by scripts/ejabberd.sh"$'\n'"certfiles:"$'\n'"  - \"$(yaml_dq "$RUN_DIR/certs.pem")\""
  fi
  [[ $XR_EJ_STARTTLS != false ]] && starttls=true
  [[ $XR_EJ_STARTTLS == required ]] && starttls_required=true
  t=${t//\{\{CERTFILES\}\}/$certfiles}
  # Direct TLS on the component listener: nothing unless XR_EJ_COMPONENT_TLS=true (default output unchanged).
  local component_tls=""
  if [[ $XR_EJ_COMPONENT_TLS == true ]]; then
    component_tls=$'\n'"    ## XR_EJ_COMPONENT_TLS: direct TLS (the component connects with xmpps://)"$'\n'"    tls: true"$'\n'"    certfile: \"$(yaml_dq "$RUN_DIR/certs.pem")\""
  fi
  t=${t//\{\{COMPONENT_TLS\}\}/$component_tls}
  # Several component connections: nothing unless XR_EJ_DOMAIN_BALANCING says so (default output unchanged).
  local balancing=""
  if [[ -n $XR_EJ_DOMAIN_BALANCING ]]; then
    balancing=$'\n\n'"## XR_EJ_DOMAIN_BALANCING: which of the component's connections gets a stanza"$'\n'"domain_balancing:"$'\n'"  \"$XR_EJ_COMPONENT_DOMAIN\":"$'\n'"    type: ${XR_EJ_DOMAIN_BALANCING%%:*}"$'\n'"    component_number: ${XR_EJ_DOMAIN_BALANCING##*:}"
  fi
  t=${t//\{\{DOMAIN_BALANCING\}\}/$balancing}
  local failover=""
  [[ $XR_EJ_FAILOVER == true ]] && failover=$'\n'"  ## XR_EJ_FAILOVER: a dead domain_balancing slot's stanzas go to a live connection"$'\n'"  mod_xr_failover: {}"
  t=${t//\{\{FAILOVER_MODULE\}\}/$failover}
  t=${t//\{\{C2S_STARTTLS\}\}/$starttls}
  t=${t//\{\{C2S_STARTTLS_REQUIRED\}\}/$starttls_required}
  [[ $t != *'{{'* ]] || die "unrendered placeholder left in $TEMPLATE: $(grep -o '{{[A-Z_0-9]*}}' <<<"$t" | head -1)"
  printf '%s\n' "$t"
}

# true if a running instance was started with exactly the current settings and template
same_as_running() {
  [[ -f $CONFIG && -f $INSTANCE_ENV ]] || return 1
  [[ $(render_yaml) == "$(<"$CONFIG")" ]] || return 1
  local k line v
  for k in "${SETTINGS[@]}"; do
    [[ $k == XR_EJ_RUN_AS ]] && continue
    line=$(grep -m1 "^$k=" "$INSTANCE_ENV") || return 1
    eval "v=${line#*=}"
    [[ $v == "${!k}" ]] || return 1
  done
}

render_config() {
  local t
  t=$(render_yaml)
  if [[ $XR_EJ_FAILOVER == true ]]; then
    # ejabberd's own ebin for the gen_mod behaviour (a warning only if it is elsewhere)
    local ebin
    ebin=$(compgen -G '/usr/lib/*/ejabberd-*/ebin' | head -1 || true)
    mkdir -p "$RUN_DIR/ebin"
    erlc -o "$RUN_DIR/ebin" ${ebin:+-pa "$ebin"} "$SCRIPT_DIR/ejabberd/mod_xr_failover.erl" ||
      die "cannot compile scripts/ejabberd/mod_xr_failover.erl (erlc comes with ejabberd's Erlang)"
  fi
  umask 027
  printf '%s\n' "$t" >"$CONFIG.tmp"
  mv -f "$CONFIG.tmp" "$CONFIG"

  # Read by ejabberdctl (sourced). ERL_DIST_PORT makes it pass
  # `-erl_epmd_port PORT -start_epmd false` to the server (which then listens on PORT)
  # and `-dist_listen false` to its control clients: no epmd at all.
  {
    printf '# generated by scripts/ejabberd.sh\n'
    printf 'ERLANG_NODE=%s\n' "$XR_EJ_NODE"
    printf 'ERL_DIST_PORT=%s\n' "$XR_EJ_DIST_PORT"
    local pa=""
    [[ $XR_EJ_FAILOVER == true ]] && pa=" -pa $RUN_DIR/ebin"
    printf 'ERL_OPTIONS=%q\n' "-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {${XR_EJ_DIST_IP//./,}}$pa"
    # a fixed distribution port for the firewall (the same as -erl_epmd_port: no epmd)
    [[ $XR_EJ_DIST_IP != 127.0.0.1 ]] && printf 'FIREWALL_WINDOW=%s-%s\n' "$XR_EJ_DIST_PORT" "$XR_EJ_DIST_PORT"
    printf 'EJABBERD_PID_PATH=%q\n' "$BEAM_PID_FILE"
    printf 'EJABBERD_BYPASS_WARNINGS=true\n'
    printf 'CONTRIB_MODULES_CONF_DIR=%q\n' "$RUN_DIR/modules.d"
  } >"$CTL_CONFIG"
  printf '{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n' >"$RUN_DIR/inetrc"

  {
    local k
    for k in "${SETTINGS[@]}"; do printf '%s=%q\n' "$k" "${!k}"; done
  } >"$INSTANCE_ENV"
  umask 022
}

# ---------------------------------------------------------------- processes

read_pid() { # FILE -> pid on stdout if the file holds one
  local p=""
  [[ -f $1 ]] && read -r p <"$1" 2>/dev/null || true
  [[ $p =~ ^[0-9]+$ ]] && printf '%s\n' "$p"
  return 0
}

# Alive and ours: its command line mentions our run dir (guards against pid reuse).
# While a process is in execve (the launcher becoming ejabberdctl, that becoming erl) the
# kernel shows an empty command line for a moment; that is still ours, unless it is a
# zombie or a kernel thread (also empty, parent 2).
is_ours() {
  local pid=$1 cmd
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  if [[ -z $cmd ]]; then
    alive "$pid" && [[ $(parent_of "$pid") != 2 ]]
    return
  fi
  [[ $cmd == *"$RUN_DIR/"* ]]
}

parent_of() { # PID -> its parent's pid on stdout (nothing when it is gone)
  local st
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 0
  st=${st##*) } # after "(comm) "
  st=${st#* }   # drop state
  printf '%s\n' "${st%% *}"
}

# Alive and not a zombie (our launcher is reparented to pid 1, which may reap it late).
alive() {
  local st
  [[ -n $1 ]] && { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  [[ ${st:0:1} != Z ]]
}

# pid plus all its descendants (walks /proc; no procps needed)
with_descendants() {
  local root=$1 stat rest pid ppid
  local -A children=()
  for stat in /proc/[0-9]*/stat; do
    { read -r rest <"$stat"; } 2>/dev/null || continue
    pid=${rest%% *}
    rest=${rest##*) }           # after "(comm) "
    rest=${rest#* }             # drop state
    ppid=${rest%% *}
    children[$ppid]+="$pid "
  done
  local -a queue=("$root") out=()
  while ((${#queue[@]})); do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    out+=("$pid")
    # shellcheck disable=SC2206
    [[ -n ${children[$pid]:-} ]] && queue+=(${children[$pid]})
  done
  printf '%s\n' "${out[@]}"
}

launcher_pid() { local p; p=$(read_pid "$LAUNCHER_PID_FILE"); is_ours "$p" && printf '%s\n' "$p"; return 0; }
beam_pid() { local p; p=$(read_pid "$BEAM_PID_FILE"); is_ours "$p" && printf '%s\n' "$p"; return 0; }

our_pids() {
  local l b
  l=$(launcher_pid)
  b=$(beam_pid)
  { [[ -n $l ]] && with_descendants "$l"; [[ -n $b ]] && with_descendants "$b"; true; } | sort -un
}

is_running() { [[ -n $(launcher_pid) || -n $(beam_pid) ]]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- HTTP API

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# api COMMAND JSON -> prints "HTTPCODE BODY"; fails if the HTTP listener does not answer
api() {
  local url="http://127.0.0.1:$XR_EJ_HTTP_PORT/api/$1" body=$2
  if command -v curl >/dev/null 2>&1; then
    local out
    out=$(curl -sS -m 10 -H 'Content-Type: application/json' --data-binary "$body" \
      -w '\n%{http_code}' "$url" 2>/dev/null) || return 1
    printf '%s %s\n' "${out##*$'\n'}" "${out%$'\n'*}"
  else
    XR_URL=$url XR_BODY=$body timeout 15 node -e '
      fetch(process.env.XR_URL, { method: "POST", headers: { "Content-Type": "application/json" },
        body: process.env.XR_BODY, signal: AbortSignal.timeout(10000) })
        .then(async (r) => { console.log(r.status + " " + (await r.text())); })
        .catch(() => process.exit(1));'
  fi
}

api_ready() {
  local r
  r=$(api registered_users "{\"host\":$(json_str "$XR_EJ_VHOST")}") || return 1
  [[ $r == "200 "* ]]
}

# ---------------------------------------------------------------- commands

print_ports() {
  cat <<EOF
ejabberd ($XR_EJ_NODE) ready, run dir $RUN_DIR
  vhost           $XR_EJ_VHOST
  component       $XR_EJ_COMPONENT_DOMAIN (secret from XR_EJ_COMPONENT_SECRET)
  c2s             $XR_EJ_LISTEN_IP:$XR_EJ_C2S_PORT  ($([[ $XR_EJ_STARTTLS == false ]] && echo 'plain TCP, no STARTTLS' || echo "STARTTLS $XR_EJ_STARTTLS"), c2s shaper: $XR_EJ_SHAPER)
  component port  $XR_EJ_LISTEN_IP:$XR_EJ_COMPONENT_PORT  ($([[ $XR_EJ_COMPONENT_TLS == true ]] && echo 'direct TLS: xmpps://' || echo 'plain TCP: xmpp://'))
  http            http://127.0.0.1:$XR_EJ_HTTP_PORT/api  http://127.0.0.1:$XR_EJ_HTTP_PORT/upload
  proxy65         proxy.$XR_EJ_VHOST at $XR_EJ_PROXY65_HOST:$XR_EJ_PROXY65_PORT (listening on $XR_EJ_PROXY65_IP)
  erlang dist     $XR_EJ_DIST_IP:$XR_EJ_DIST_PORT (no epmd$([[ -n $XR_EJ_COOKIE_FILE ]] && echo ', own cookie')$([[ -n $XR_EJ_JOIN ]] && echo ", cluster of $XR_EJ_JOIN"))
  upload service  upload.$XR_EJ_VHOST
EOF
}

ready_now() {
  port_open "$XR_EJ_C2S_PORT" && port_open "$XR_EJ_COMPONENT_PORT" &&
    port_open "$XR_EJ_PROXY65_PORT" && api_ready
}

wait_ready() { # timeout-seconds
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
  tail -n 30 "$CONSOLE_LOG" >&2 2>/dev/null || true
  log "---- errors in $LOG_DIR/ejabberd.log"
  grep -E '\[(error|critical)\]' "$LOG_DIR/ejabberd.log" 2>/dev/null | tail -n 15 >&2 || true
}

cmd_start() {
  ensure_installed
  local t0=$SECONDS
  if is_running && ! same_as_running; then
    log "running with other settings or an older config template: restarting it"
    cmd_stop
  fi
  if is_running; then
    if wait_ready "$XR_EJ_START_TIMEOUT"; then
      log "already running (pid $(launcher_pid)$(b=$(beam_pid); [[ -n $b ]] && printf ', beam %s' "$b"))"
      print_ports
      return 0
    fi
    log "process alive but not ready after ${XR_EJ_START_TIMEOUT}s: restarting it"
    show_logs
    cmd_stop
  fi
  rm -f "$LAUNCHER_PID_FILE" "$BEAM_PID_FILE"

  local p
  for p in "$XR_EJ_C2S_PORT" "$XR_EJ_COMPONENT_PORT" "$XR_EJ_HTTP_PORT" "$XR_EJ_DIST_PORT" "$XR_EJ_PROXY65_PORT"; do
    port_open "$p" && die "port 127.0.0.1:$p is already in use by another process (set XR_EJ_*_PORT)"
  done

  mkdir -p "$LOG_DIR" "$SPOOL_DIR" "$UPLOAD_DIR" "$RUN_DIR/modules.d"
  # mnesia's schema belongs to one node name: a spool of another node would not start.
  if [[ -f $SPOOL_DIR/.node && $(<"$SPOOL_DIR/.node") != "$XR_EJ_NODE" ]]; then
    log "node name changed ($(<"$SPOOL_DIR/.node") -> $XR_EJ_NODE): resetting the spool"
    rm -rf "$SPOOL_DIR"
    mkdir -p "$SPOOL_DIR"
  fi
  printf '%s\n' "$XR_EJ_NODE" >"$SPOOL_DIR/.node"

  rm -f "$RUN_DIR/.erlang.cookie"
  if [[ -n $XR_EJ_COOKIE_FILE ]]; then
    (umask 077 && tr -d '\n' <"$XR_EJ_COOKIE_FILE" >"$RUN_DIR/.erlang.cookie") || die "cannot copy the cookie"
    chmod 0400 "$RUN_DIR/.erlang.cookie"
  fi
  if [[ -n $XR_EJ_CERTFILE ]]; then
    # A copy inside the run dir, so the ejabberd user can read it wherever the original lives.
    install -m 0640 "$XR_EJ_CERTFILE" "$RUN_DIR/certs.pem" || die "cannot copy $XR_EJ_CERTFILE"
  fi
  choose_run_as
  render_config
  ((EUID == 0)) && [[ $XR_EJ_RUN_AS == ejabberd ]] && chown -R ejabberd: "$RUN_DIR"

  local ctl args
  ctl=$(ctl_path)
  mapfile -t args < <(ctl_args)
  printf '\n==== %s start\n' "$(date '+%F %T')" >>"$CONSOLE_LOG"
  # setsid: own session and process group, so stop can signal the whole group.
  # The launcher writes its own pid, then becomes ejabberdctl (exec).
  ctl_home SCRIPT=$SYSTEM_CTL setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' xr-ejabberd \
    "$LAUNCHER_PID_FILE" "$ctl" "${args[@]}" foreground \
    </dev/null >>"$CONSOLE_LOG" 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s $LAUNCHER_PID_FILE ]] && break; sleep 0.1; done

  local rc=0
  wait_ready "$XR_EJ_START_TIMEOUT" || rc=$?
  if ((rc != 0)); then
    if ((rc == 2)); then log "ejabberd exited during start"; else log "ejabberd not ready after ${XR_EJ_START_TIMEOUT}s"; fi
    show_logs
    cmd_stop >/dev/null 2>&1 || true
    exit 1
  fi
  [[ -n $XR_EJ_JOIN ]] && join_cluster
  log "started in $((SECONDS - t0))s (launcher pid $(launcher_pid), beam pid $(beam_pid))"
  print_ports
}

# Joins XR_EJ_JOIN's cluster unless already in it (a restart of a joined node rejoins by itself).
join_cluster() {
  local nodes
  nodes=$(run_ctl list_cluster 2>/dev/null | tr -d "'") || die "list_cluster failed"
  if grep -qxF "$XR_EJ_JOIN" <<<"$nodes"; then
    log "already in the cluster of $XR_EJ_JOIN"
    return 0
  fi
  log "joining the cluster of $XR_EJ_JOIN"
  local out
  out=$(run_ctl join_cluster "$XR_EJ_JOIN" 2>&1) || { show_logs; die "join_cluster $XR_EJ_JOIN failed: $out"; }
  # join_cluster restarts ejabberd's application on this node
  wait_ready "$XR_EJ_START_TIMEOUT" || { show_logs; die "not ready after joining $XR_EJ_JOIN"; }
  nodes=$(run_ctl list_cluster 2>/dev/null | tr -d "'") || die "list_cluster failed"
  grep -qxF "$XR_EJ_JOIN" <<<"$nodes" || die "joined, but $XR_EJ_JOIN is not in list_cluster: $nodes"
  log "in the cluster: $(tr '\n' ' ' <<<"$nodes")"
}

cmd_stop() {
  local l b pids
  l=$(launcher_pid)
  b=$(beam_pid)
  mapfile -t pids < <(our_pids)
  if ((${#pids[@]} == 0)); then
    rm -f "$LAUNCHER_PID_FILE" "$BEAM_PID_FILE"
    log "not running"
    return 0
  fi
  # SIGTERM makes the Erlang VM run init:stop() (clean mnesia shutdown).
  if [[ -n $b ]]; then
    kill -TERM "$b" 2>/dev/null || true
  else
    kill -TERM -- "-$l" 2>/dev/null || kill -TERM "$l" 2>/dev/null || true
  fi
  local deadline=$((SECONDS + XR_EJ_STOP_TIMEOUT)) p left
  while :; do
    left=()
    for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
    ((${#left[@]} == 0 || SECONDS >= deadline)) && break
    sleep 0.2
  done
  if ((${#left[@]})); then
    log "still alive after ${XR_EJ_STOP_TIMEOUT}s: killing ${left[*]}"
    [[ -n $l ]] && kill -KILL -- "-$l" 2>/dev/null || true
    for p in "${left[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
      left=()
      for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
      ((${#left[@]} == 0)) && break
      sleep 0.1
    done
    ((${#left[@]} == 0)) || die "could not stop pids ${left[*]}"
  fi
  rm -f "$LAUNCHER_PID_FILE" "$BEAM_PID_FILE"
  log "stopped"
}

cmd_status() {
  if ! is_running; then
    log "not running"
    return 1
  fi
  if ready_now; then
    log "running and ready (launcher pid $(launcher_pid), beam pid $(beam_pid))"
    print_ports
    return 0
  fi
  log "process alive (launcher pid $(launcher_pid)) but not ready"
  return 2
}

cmd_register() {
  (($# == 2)) || die "usage: $0 register USER PASSWORD"
  local user=$1 password=$2 r
  [[ -n $user && $user != *@* && -n $password ]] || die "register: USER is the local part, PASSWORD non-empty"
  is_running || die "ejabberd is not running (run dir $RUN_DIR); run: $0 start"
  local who
  who="\"user\":$(json_str "$user"),\"host\":$(json_str "$XR_EJ_VHOST")"
  if ! r=$(api register "{$who,\"password\":$(json_str "$password")}"); then
    log "HTTP API not reachable: falling back to ejabberdctl"
    local out
    if out=$(run_ctl register "$user" "$XR_EJ_VHOST" "$password" 2>&1); then
      log "registered $user@$XR_EJ_VHOST"
      return 0
    fi
    [[ $out == *"already registered"* ]] || die "register failed: $out"
    run_ctl change_password "$user" "$XR_EJ_VHOST" "$password" >/dev/null || die "change_password failed"
    log "$user@$XR_EJ_VHOST already registered; password set"
    return 0
  fi
  case $r in
    "200 "*)
      log "registered $user@$XR_EJ_VHOST"
      ;;
    *"already registered"* | "409 "*)
      r=$(api change_password "{$who,\"newpass\":$(json_str "$password")}") || die "change_password: no answer"
      [[ $r == "200 "* ]] || die "change_password failed: $r"
      log "$user@$XR_EJ_VHOST already registered; password set"
      ;;
    *) die "register failed: $r" ;;
  esac
}

cmd_env() {
  local k
  for k in XR_RUN_DIR "${SETTINGS[@]}"; do
    [[ $k == XR_RUN_DIR ]] && { printf 'XR_RUN_DIR=%q\n' "$RUN_DIR"; continue; }
    printf '%s=%q\n' "$k" "${!k:-}"
  done
}

main() {
  local cmd=${1:-}
  CMD=$cmd
  [[ -n $cmd ]] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
  shift
  setup_run_dir "$cmd"
  case $cmd in
    start | restart) ;;
    *) load_recorded_settings ;;
  esac
  apply_defaults
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    register) cmd_register "$@" ;;
    ctl) run_ctl "$@" ;;
    env) cmd_env ;;
    *) die "unknown command: $cmd (start|stop|restart|status|register|ctl|env)" ;;
  esac
}

main "$@"
