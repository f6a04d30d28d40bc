#!/usr/bin/env bash
# Installs what the Dino integration test (test/integration/dino.test.ts)
# needs on Debian, when missing: Dino 0.4.2 (dino-im), Xvfb, xdotool, dbus
# (dbus-run-session), sqlite3, openssl, util-linux (unshare) and
# ca-certificates. Idempotent and quiet when everything is there.
# Usage: scripts/dino-deps.sh [--check]   (--check: only report what is missing, exit 1 if anything)
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }
have_cmd dino-im || need+=(dino-im)
have_cmd Xvfb || need+=(xvfb)
have_cmd xdotool || need+=(xdotool)
have_cmd dbus-run-session || need+=(dbus)
have_cmd sqlite3 || need+=(sqlite3)
have_cmd openssl || need+=(openssl)
have_cmd unshare || need+=(util-linux)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "${1:-}" = --check ]; then
  echo "dino-deps.sh: missing: ${need[*]}" >&2
  exit 1
fi
echo "dino-deps.sh: installing Debian packages: ${need[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || { echo "dino-deps.sh: not root and no sudo: install ${need[*]} by hand" >&2; exit 1; }
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
for c in dino-im Xvfb xdotool dbus-run-session sqlite3 openssl unshare; do
  have_cmd "$c" || { echo "dino-deps.sh: $c still missing after the install" >&2; exit 1; }
done
