#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine with
# Node 20: Debian packages when missing (ejabberd; for tests also libpurple's
# headers, slixmpp, Profanity with tmux to drive it, Chromium, and iproute2
# and nftables for the network lab), and
# node_modules when missing. Usage: deps.sh [demo|test]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}

pkgs=()
command -v ejabberdctl >/dev/null 2>&1 || [ -x /usr/sbin/ejabberdctl ] || pkgs+=(ejabberd)
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
if [ "$what" = test ]; then
  pkg-config --exists purple 2>/dev/null || pkgs+=(libpurple-dev)
  command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
  pkg-config --exists glib-2.0 2>/dev/null || pkgs+=(libglib2.0-dev)
  command -v gcc >/dev/null 2>&1 || pkgs+=(gcc)
  /usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1 || pkgs+=(python3-slixmpp)
  command -v profanity >/dev/null 2>&1 || pkgs+=(profanity)
  command -v tmux >/dev/null 2>&1 || pkgs+=(tmux)
  # test CAs and certificates (the TLS component link, Dino's STARTTLS)
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  # the browser for the Converse.js test (puppeteer-core drives it; it downloads none)
  [ -x /usr/bin/chromium ] || pkgs+=(chromium)
  # the network lab (test/support/netlab.ts, scripts/netlab.sh): namespaces, veth, bridges, tc; nft
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || pkgs+=(iproute2)
  command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || pkgs+=(nftables)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "deps.sh: installing Debian packages: ${pkgs[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "deps.sh: npm ci" >&2
  npm ci --no-audit --no-fund >/dev/null
fi
