#!/usr/bin/env bash
# Installs Debian's prosody (0.12) for the tests' private instances
# (scripts/prosody.sh) without ever starting the system service: the package's
# postinst would start and enable one on 5222/5269/5347. A policy-rc.d that
# exits 101 ("action forbidden") is put in place around the install, and
# whatever policy-rc.d was there before is put back afterwards. A system
# prosody left running by an earlier install is stopped and disabled, and said so.
set -euo pipefail
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
POLICY=/usr/sbin/policy-rc.d

if [ ! -x /usr/bin/prosody ]; then
  echo "deps.sh: installing Debian package prosody (system service kept from starting)" >&2
  saved=
  if [ -e "$POLICY" ] || [ -L "$POLICY" ]; then
    saved=$(mktemp /tmp/xr-policy-rc.d.XXXXXX)
    $SUDO cp -a "$POLICY" "$saved"
  fi
  restore() {
    if [ -n "$saved" ]; then $SUDO cp -a "$saved" "$POLICY" && rm -f "$saved"; else $SUDO rm -f "$POLICY"; fi
  }
  trap restore EXIT
  printf '#!/bin/sh\n# scripts/prosody-deps.sh: no service starts during this install\nexit 101\n' |
    $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q --no-install-recommends prosody >/dev/null; then
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q --no-install-recommends prosody >/dev/null
  fi
  restore
  trap - EXIT
  # The package also enabled the service for the next boot: not wanted either.
  $SUDO systemctl disable prosody >/dev/null 2>&1 || $SUDO update-rc.d prosody disable >/dev/null 2>&1 || true
  [ -x /usr/bin/prosody ] || { echo "deps.sh: /usr/bin/prosody missing after installing prosody" >&2; exit 1; }
fi

# A system service from an earlier install (without the policy-rc.d) holds 5222 etc.: stop and disable it.
if [ -d /run/systemd/system ] && systemctl is-active --quiet prosody 2>/dev/null; then
  echo "deps.sh: the system prosody service is running (from an earlier install): stopping and disabling it" >&2
  $SUDO systemctl disable --now prosody >/dev/null 2>&1 || echo "deps.sh: could not stop the system prosody" >&2
elif [ -r /run/prosody/prosody.pid ]; then
  pid=$(cat /run/prosody/prosody.pid 2>/dev/null || true)
  if [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q prosody "/proc/$pid/cmdline" 2>/dev/null; then
    echo "deps.sh: the system prosody (pid $pid, from an earlier install) is running: stopping and disabling it" >&2
    $SUDO /etc/init.d/prosody stop >/dev/null 2>&1 || true
    # (Debian's init script can say "stopped" and leave it running): then by its pid, bounded.
    for sig in TERM TERM KILL; do
      for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      [ -d "/proc/$pid" ] || break
      $SUDO kill -"$sig" "$pid" 2>/dev/null || true
    done
    [ -d "/proc/$pid" ] && echo "deps.sh: could not stop the system prosody (pid $pid)" >&2
    $SUDO systemctl disable prosody >/dev/null 2>&1 || $SUDO update-rc.d prosody disable >/dev/null 2>&1 || true
  fi
fi
