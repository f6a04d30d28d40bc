#!/usr/bin/env bash
# The network lab by hand: the same namespaces, links, NAT and firewall the lab
# tests build (test/support/netlab.ts), left up until `down`. Root only.
#
# Usage: scripts/netlab.sh up|down|exec HOST CMD...|hosts
#   up      build the lab (npm run build first); prints each host's namespace and addresses
#   down    remove it: what runs inside is killed, namespaces, links and rules go
#   exec    run CMD inside HOST (xmpp component office intranet home v6 corp homegw),
#           e.g. `scripts/netlab.sh exec home ping -c1 192.0.2.10`
#   hosts   the namespace names
# Settings: XR_NETLAB_PREFIX [xrs<uid>] the namespaces' name prefix (letters and digits,
# at most 9), so labs of other people on the machine do not collide.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${XR_NETLAB_PREFIX:-xrs$(id -u)}
cli=dist/test/support/netlab-cli.js
need_cli() { [[ -f $cli ]] || npm run --silent build; }
case ${1:-} in
  up) need_cli; node "$cli" up "$prefix" ;;
  down) need_cli; node "$cli" down "$prefix" ;;
  exec)
    (($# >= 3)) || { echo "usage: $0 exec HOST CMD..." >&2; exit 2; }
    host=$2; shift 2
    exec ip netns exec "$prefix-$host" "$@" ;;
  hosts) ip netns list | awk -v p="$prefix-" 'index($1, p) == 1 {print $1}' ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
