#!/usr/bin/env bash
# Installs, when missing, what the real-Gajim test (test/integration/gajim.test.ts)
# needs: Gajim 1.7 (Debian gajim), Xvfb, xdotool, dbus (dbus-run-session), and
# imagemagick for failure screenshots. Idempotent and quiet when everything is there.
# Usage: scripts/gajim-deps.sh [--check]   (--check: only report what is missing, exit 1 if anything)
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }
have_cmd gajim || need+=(gajim)
have_cmd Xvfb || need+=(xvfb)
have_cmd xdotool || need+=(xdotool)
have_cmd dbus-run-session || need+=(dbus)
have_cmd import || need+=(imagemagick)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "${1:-}" = --check ]; then
  echo "gajim-deps.sh: missing: ${need[*]}" >&2
  exit 1
fi
echo "gajim-deps.sh: installing Debian packages: ${need[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || { echo "gajim-deps.sh: not root and no sudo: install ${need[*]} by hand" >&2; exit 1; }
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
for c in gajim Xvfb xdotool dbus-run-session; do
  have_cmd "$c" || { echo "gajim-deps.sh: $c still missing after the install" >&2; exit 1; }
done
