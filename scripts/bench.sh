#!/usr/bin/env bash
# Benchmarks: installs what they need, builds, and runs bench/run.ts,
# which starts its own private ejabberd (.run/bench-ejabberd, ports 30222-30227;
# a second one with Debian's c2s shaper on 31242-31246; for item 6 two private
# Prosodys, .run/bench-prosody with network_default_read_size 65536 and
# .run/bench-prosody-stock with Prosody's 4096, on base+20 and base+30 (c2s,
# component, proxy65: 30242-30244, 30252-30254)), the component as a
# separate process, the bench receiver, a slixmpp sender bot and a raw TCP
# sender, all on loopback, and stops every process it started by pid.
# Results: stdout and bench/results/<YYYY-MM-DD>.md.
#
# Usage: npm run bench [-- --quick] [-- --only=1,3] [-- --keep-ejabberd]
#   --quick   smaller files and fewer runs: a smoke check of a few minutes
#   --only=…  a subset of the items 1 (S5B: SI, and Jingle against SI) 2 (IBB) 3 (concurrency) 4 (memory) 5 (latency)
#             6 (IBB and S5B through Prosody beside ejabberd, the servers alternated in the same run)
#             7 (libpurple receiver vs a slixmpp component bot, reports from the HTTP intranet)
#             8 (network lab, root: office S5B direct, home at 20 Mbit/s by tbf through proxy65 and by IBB,
#             the home user's first against second request; bench/netlab.ts)
#             9 (network lab, root: the two-node ejabberd cluster, requests/s of one instance against two,
#             100 KiB reports from 50 users; bench/cluster.ts)
# Environment: XR_BENCH_IBB_WINDOW (IBB blocks in flight, default 8),
#   XR_SLIX_PYTHON (default /usr/bin/python3), XR_BENCH_PORT_BASE [30222] and
#   XR_BENCH_SHAPED_PORT_BASE [31242] (the bench ejabberds' ports). For investigating a figure:
#   XR_BENCH_PROFILE=DIR (V8 CPU profiles of the component and the receiver; node dist/bench/cpuprofile-sum.js FILE… sums them),
#   XR_BENCH_COMPONENT_LOG=FILE (the components' log lines), XR_BENCH_VERBOSE=1
#   (every transfer's timings), XR_BENCH_RSS_TIMELINE=1 (item 3 RSS over time),
#   XR_BENCH_IBB_BLOCKS=65535,4096, XR_BENCH_SKIP_SHAPED=1, XR_BENCH_CONC_RUNS=N,
#   XR_BENCH_S5B_HASH=inline, XR_BENCH_COMPONENT_NODE_ARGS='--import …', XR_BENCH_TRACE=1 (item 7: 15
#   requests step by step, each step's median; sub-ms log times), XR_BENCH_PURPLE_CASES=1,2,3,4 (item 7: a subset), XR_BENCH_PURPLE_RUNS=N (item 7: N rounds per case), XR_BENCH_PURPLE_DEBUG=1.
#   Item 6 also uses port XR_BENCH_PORT_BASE+5 (the bot's component listener).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh test
if ! npm run --silent build; then
  # tsc emits even with type errors; other people's work in progress elsewhere
  # in the tree should not stop a benchmark of what compiled
  [[ -f dist/src/main.js && -f dist/bench/run.js ]] || { echo "bench.sh: the build failed" >&2; exit 1; }
  echo "bench.sh: warning: the build reported type errors (above); benchmarking the JavaScript it emitted" >&2
fi
# the whole bench is bounded in time by bench/run.ts itself; this is the outer bound
exec timeout --signal=TERM --kill-after=60 3600 node dist/bench/run.js "$@"
