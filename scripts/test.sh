#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests against a private
# ejabberd (started and stopped by the tests) with libpurple and slixmpp as
# real receiving clients. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
npm run --silent build
bash scripts/build-purple-client.sh >/dev/null
# Tests get their own ejabberd run dir and ports, so a running demo is not disturbed.
export XR_TEST_RUN_DIR=${XR_TEST_RUN_DIR:-$PWD/.run/test-ejabberd}
cleanup() { XR_RUN_DIR=$XR_TEST_RUN_DIR bash scripts/ejabberd.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
npx mocha --config .mocharc.json 'dist/test/unit/**/*.test.js' 'dist/test/integration/**/*.test.js' "$@"
