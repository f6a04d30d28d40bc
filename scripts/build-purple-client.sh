#!/usr/bin/env bash
# Builds the headless libpurple receiver used by the integration tests:
#   test/clients/purple-receiver.c  ->  .run/bin/purple-receiver
# Installs the build dependencies when they are missing (CI runs on a fresh
# Debian machine as root), rebuilds only when the source (or this script) is
# newer than the binary, and prints the binary's path on stdout.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$repo/test/clients/purple-receiver.c"
out_dir="$repo/.run/bin"
bin="$out_dir/purple-receiver"

log() { echo "build-purple-client: $*" >&2; }

have_deps() {
  command -v gcc >/dev/null 2>&1 &&
    command -v pkg-config >/dev/null 2>&1 &&
    pkg-config --exists purple glib-2.0 2>/dev/null
}

if ! have_deps; then
  log "installing build dependencies (libpurple-dev pkg-config libglib2.0-dev gcc)"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # apt-get's own output would pollute our stdout, which carries the path.
  {
    $sudo apt-get update -qq || true
    $sudo apt-get install -y -qq --no-install-recommends libpurple-dev pkg-config libglib2.0-dev gcc libc6-dev
  } >&2
  have_deps || { log "build dependencies are still missing"; exit 1; }
fi

if [ -x "$bin" ] && [ "$bin" -nt "$src" ] && [ "$bin" -nt "${BASH_SOURCE[0]}" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$out_dir"
# Build to a temporary name and rename, so that a concurrent caller never
# runs a half-written binary.
tmp="$(mktemp "$out_dir/.purple-receiver.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# shellcheck disable=SC2046  # pkg-config output must be word-split
gcc -std=gnu11 -Wall -O2 -o "$tmp" "$src" $(pkg-config --cflags --libs purple glib-2.0) >&2
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
trap - EXIT
log "built $bin"
echo "$bin"
