#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests against a private
# ejabberd and a private Prosody (both started and stopped by the tests) with
# libpurple and slixmpp as real receiving clients. Installs what it needs first
# (deps.sh: Prosody without its system service).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
npm run --silent build
bash scripts/build-purple-client.sh >/dev/null
# Tests get their own ejabberd run dir and ports, so a running demo is not disturbed.
export XR_TEST_RUN_DIR=${XR_TEST_RUN_DIR:-$PWD/.run/test-ejabberd}
export XR_TEST_PROSODY_RUN_DIR=${XR_TEST_PROSODY_RUN_DIR:-$PWD/.run/test-prosody}
# Whatever a failed run left behind is stopped (by the pid in its run dir), also on failure.
cleanup() {
  XR_RUN_DIR=$XR_TEST_RUN_DIR bash scripts/ejabberd.sh stop >/dev/null 2>&1 || true
  local d
  for d in "$XR_TEST_PROSODY_RUN_DIR" "$PWD/.run/test-prosody-noacl"; do
    XR_RUN_DIR=$d bash scripts/prosody.sh stop >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
npx mocha --config .mocharc.json 'dist/test/unit/**/*.test.js' 'dist/test/integration/**/*.test.js' "$@"
