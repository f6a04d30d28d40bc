#!/usr/bin/env bash
# Installs, when missing, what a real desktop client's integration test needs
# on Debian: the client, Xvfb, xdotool and dbus (dbus-run-session) for all, plus
#   dino:  Dino 0.4.2 (dino-im), sqlite3, openssl, util-linux (unshare), ca-certificates
#   psi:   Psi 1.5 (psi), imagemagick (failure screenshots)
#   gajim: Gajim 1.7 (gajim), imagemagick (failure screenshots)
# Idempotent and quiet when everything is there.
# Usage: scripts/desktop-deps.sh dino|psi|gajim [--check]   (--check: only report what is missing, exit 1 if anything)
set -euo pipefail
app=${1:-}
me="desktop-deps.sh $app"

have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }
# command:package pairs
case "$app" in
  dino) wanted=(dino-im:dino-im sqlite3:sqlite3 openssl:openssl unshare:util-linux) ;;
  psi) wanted=(psi:psi import:imagemagick) ;;
  gajim) wanted=(gajim:gajim import:imagemagick) ;;
  *) echo "usage: $0 dino|psi|gajim [--check]" >&2; exit 2 ;;
esac
wanted+=(Xvfb:xvfb xdotool:xdotool dbus-run-session:dbus)

need=()
for w in "${wanted[@]}"; do have_cmd "${w%%:*}" || need+=("${w#*:}"); done
if [ "$app" = dino ] && [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then need+=(ca-certificates); fi

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "${2:-}" = --check ]; then
  echo "$me: missing: ${need[*]}" >&2
  exit 1
fi
echo "$me: installing Debian packages: ${need[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || { echo "$me: not root and no sudo: install ${need[*]} by hand" >&2; exit 1; }
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
for w in "${wanted[@]}"; do
  have_cmd "${w%%:*}" || { echo "$me: ${w%%:*} still missing after the install" >&2; exit 1; }
done
