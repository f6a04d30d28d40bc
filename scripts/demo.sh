#!/usr/bin/env bash
# One command for a working local demo: a private ejabberd (installed from
# Debian when missing), two demo users, the component serving the sample
# reports in demo/reports, and what to type into Pidgin. Ctrl-C stops it all.
#
# XR_DEMO_SELFCHECK=1: instead of waiting for Ctrl-C, check that the component
# comes up and answers a request (as demo user alice, bounded in time), then
# stop everything and exit 0 (or 1). CI runs it on its own ports and run dir.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh demo
npm run --silent build

export XR_RUN_DIR=${XR_RUN_DIR:-$PWD/.run/ejabberd}
C2S=${XR_EJ_C2S_PORT:-15222}
COMPONENT=${XR_EJ_COMPONENT_PORT:-15223}
SECRET=${XR_EJ_COMPONENT_SECRET:-demo-secret-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}
VHOST=${XR_EJ_VHOST:-example.com}
DOMAIN=${XR_EJ_COMPONENT_DOMAIN:-reports.example.com}
HTTP=${XR_EJ_HTTP_PORT:-15224}
PROXY_PORT=${XR_PROXY_BIND_PORT:-15625}
METRICS_PORT=${XR_METRICS_BIND_PORT:-15627}

XR_EJ_COMPONENT_SECRET=$SECRET XR_EJ_VHOST=$VHOST XR_EJ_COMPONENT_DOMAIN=$DOMAIN XR_EJ_C2S_PORT=$C2S XR_EJ_COMPONENT_PORT=$COMPONENT \
  bash scripts/ejabberd.sh start >/dev/null
bash scripts/ejabberd.sh register alice alice >/dev/null
bash scripts/ejabberd.sh register bob bob >/dev/null

comp_pid=
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping"
  if [ -n "$comp_pid" ] && kill -0 "$comp_pid" 2>/dev/null; then
    kill -TERM "$comp_pid" 2>/dev/null || true
    wait "$comp_pid" 2>/dev/null || true
  fi
  bash scripts/ejabberd.sh stop >/dev/null 2>&1 || true
}
trap stop_all INT TERM EXIT

XR_XMPP_SERVICE=xmpp://127.0.0.1:$COMPONENT XR_XMPP_DOMAIN=$DOMAIN XR_XMPP_SECRET=$SECRET \
XR_REPORTS_SOURCE=folder XR_REPORTS_FOLDER=$PWD/demo/reports \
XR_PROXY_BIND_HOST=127.0.0.1 XR_PROXY_BIND_PORT=$PROXY_PORT XR_LOG_LEVEL=${XR_LOG_LEVEL:-info} \
XR_LINKS_UPLOAD_SERVICE=upload.$VHOST \
XR_METRICS_BIND_HOST=127.0.0.1 XR_METRICS_BIND_PORT=$METRICS_PORT XR_ADMIN_JIDS=bob@$VHOST \
  node --max-semi-space-size=4 dist/src/main.js &
comp_pid=$!

if [ "${XR_DEMO_SELFCHECK:-}" = 1 ]; then
  rc=0
  timeout 120 node dist/test/support/demo-check.js --port "$C2S" --vhost "$VHOST" --component "$DOMAIN" \
    --user alice --password alice --project 1234 --healthz "http://127.0.0.1:$METRICS_PORT/healthz" || rc=$?
  exit "$rc"
fi

# Converse.js (the web client the tests use, in node_modules) against the demo's ejabberd
# WebSocket: a page beside its dist files, for any static file server on loopback.
converse_txt=
if [ -f node_modules/converse.js/dist/converse.js ]; then
  web=$PWD/.run/converse-demo
  mkdir -p "$web"
  ln -sfn "$PWD/node_modules/converse.js/dist" "$web/dist"
  cat >"$web/index.html" <<HTML
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xmpp-reports demo: Converse.js</title>
<link rel="stylesheet" href="/dist/converse.min.css"></head>
<body><script type="module">
import converse from '/dist/converse.js';
converse.initialize({ view_mode: 'overlayed', websocket_url: 'ws://127.0.0.1:$HTTP/ws',
  show_controlbox_by_default: true, discover_connection_methods: false, assets_path: '/dist/', i18n: 'en',
  jid: 'alice@$VHOST' });
</script></body></html>
HTML
  converse_txt="
  In a browser, Converse.js (it gets reports as download links; ejabberd's upload
  service holds them): serve its page with
    python3 -m http.server --bind 127.0.0.1 --directory $web 15628
  open http://127.0.0.1:15628/, log in as alice@$VHOST / alice, then open
  http://127.0.0.1:15628/#converse/chat?jid=1234@$DOMAIN and send any message.
"
fi

cat <<TXT

  xmpp-reports demo is running (Ctrl-C stops the component and ejabberd).

  In Pidgin: Accounts > Manage Accounts > Add…
    Protocol:  XMPP
    Username:  alice            Domain: $VHOST        Password: alice
    Advanced:  Connection security: "Use encryption if available"
               [x] Allow plaintext auth over unencrypted streams
               Connect port: $C2S    Connect server: 127.0.0.1
  (bob / bob works the same way.)

  Then: Buddies > Add Buddy… > 1234@$DOMAIN, and send it any message.
  The report arrives as a file transfer; accept it. Other sample projects: 2024, 4711.
  Or message $DOMAIN with "help".
$converse_txt

  bob is an admin: in a client with ad-hoc commands (e.g. Psi or Gajim:
  service discovery on $DOMAIN > Execute command) he can list and cancel
  transfers, show counters and reload the configuration.
  Health and Prometheus metrics: http://127.0.0.1:$METRICS_PORT/healthz  /metrics

TXT
wait "$comp_pid"
