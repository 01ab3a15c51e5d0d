#!/usr/bin/env bash
# Compares two builds of the Sluice server in the same run: a baseline and a candidate.
#
#   scripts/compare-builds.sh BASE_SLUICE NEW_SLUICE
#
# Both arguments are `sluice` binaries (for example a release build of the last release and
# `target/release/sluice`). For each of ROUNDS rounds (default 3) it starts each server in turn
# on a fresh data directory and runs the same `sluice bench` scenarios against it with the NEW
# binary's client, alternating which build goes first, so both builds see the same machine.
# It prints the median of every scenario per build and the NEW/BASE ratio (throughput: higher
# is better; latency: lower is better). Nothing is downloaded or installed.
#
# Knobs: ROUNDS, SECONDS_PER_RUN (default 5), REPLAY_RECORDS (1 KiB records replayed, default
# 1048576 = 1 GiB), PORT (default 50991).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 BASE_SLUICE NEW_SLUICE" >&2
    exit 2
fi
base=$(realpath "$1")
new=$(realpath "$2")
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_RUN:-5}
replay_records=${REPLAY_RECORDS:-1048576}
port=${PORT:-50991}
work=$(mktemp -d)
server_pid=
trap '[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

start_server() { # binary
    rm -rf "$work/data"
    "$1" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --metrics-listen off \
        >"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        if "$new" topic list --server "127.0.0.1:$port" >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    echo "server $1 did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
}

stop_server() {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

bench() { # build scenario args...
    local build=$1 scenario=$2
    shift 2
    local summary
    summary=$("$new" bench "$@" --server "127.0.0.1:$port" --output json)
    printf '%s\t%s\t%s\n' "$build" "$scenario" "$summary" >>"$work/results.tsv"
}

run_build() { # build binary
    local build=$1
    start_server "$2"
    bench "$build" "produce 1 KiB x1000 none" produce --topic p1 --flush none \
        --record-size 1024 --batch-size 1000 --duration "$seconds"
    bench "$build" "produce 1 KiB x1000 fsync" produce --topic p2 --flush fsync \
        --record-size 1024 --batch-size 1000 --duration "$seconds"
    bench "$build" "produce 100 B x1000 none" produce --topic p3 --flush none \
        --record-size 100 --batch-size 1000 --duration "$seconds"
    "$new" bench produce --server "127.0.0.1:$port" --topic replay --flush none \
        --record-size 1024 --batch-size 1000 --records "$replay_records" --output json >/dev/null
    bench "$build" "replay 1 KiB" consume --topic replay
    bench "$build" "produce at 1,000/s 1 KiB x1" produce --topic l1 --flush none \
        --record-size 1024 --batch-size 1 --rate 1000 --duration "$seconds"
    bench "$build" "e2e at 1,000/s 1 KiB x1" e2e --topic l2 --flush none \
        --record-size 1024 --batch-size 1 --rate 1000 --duration "$seconds"
    stop_server
}

for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    if ((round % 2)); then
        run_build base "$base"
        run_build new "$new"
    else
        run_build new "$new"
        run_build base "$base"
    fi
done

python3 - "$work/results.tsv" <<'EOF'
import json, statistics, sys
from collections import defaultdict

runs = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    build, scenario, summary = line.rstrip("\n").split("\t", 2)
    if scenario not in order:
        order.append(scenario)
    runs[(build, scenario)].append(json.loads(summary))

def median(build, scenario, pick):
    return statistics.median(pick(s) for s in runs[(build, scenario)])

rows = [("MB/s", lambda s: s["mb_per_sec"], True),
        ("p50 ms", lambda s: s["latency_ms"]["p50"], False),
        ("p99 ms", lambda s: s["latency_ms"]["p99"], False),
        ("p99.9 ms", lambda s: s["latency_ms"]["p999"], False)]
print(f"{'scenario':<30} {'figure':<9} {'base':>10} {'new':>10} {'new/base':>9}")
for scenario in order:
    for name, pick, _higher_is_better in rows:
        b, n = median("base", scenario, pick), median("new", scenario, pick)
        ratio = n / b if b else float("nan")
        print(f"{scenario:<30} {name:<9} {b:>10.3f} {n:>10.3f} {ratio:>9.2f}")
EOF
