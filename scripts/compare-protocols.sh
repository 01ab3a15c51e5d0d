#!/usr/bin/env bash
# Compares the Kafka wire protocol with gRPC on one Sluice server, in the same run.
#
#   scripts/compare-protocols.sh [SLUICE]        # default: target/release/sluice
#
# Starts SLUICE on a fresh data directory, then for each of ROUNDS rounds (default 3): produces
# RECORDS 1 KiB records (default 1,000,000, about 1 GB) in requests of 1000 over gRPC and over
# Kafka (acks=all), each to a topic of its own, first with `flush.policy` none and then fsync;
# and replays a topic of that size from offset 0 over both. It prints each run's throughput,
# batch latency percentiles and the server's CPU time (user and system, from /proc), then
# each figure's median and the Kafka/gRPC ratio. Run as root, it empties the page cache
# (`vm.drop_caches`) first: a cache full of other files makes page-cache writes slower and
# noisier. Nothing is downloaded or installed.
set -euo pipefail

bin=$(realpath "${1:-target/release/sluice}")
rounds=${ROUNDS:-3}
records=${RECORDS:-1000000}
grpc_port=${PORT:-50993}
kafka_port=${KAFKA_PORT:-9193}
work=$(mktemp -d)
server_pid=
trap '[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

server=http://127.0.0.1:$grpc_port
kafka=127.0.0.1:$kafka_port
if [[ $(id -u) == 0 ]]; then
    sync
    echo 1 >/proc/sys/vm/drop_caches
fi
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$grpc_port" \
    --kafka-listen "$kafka" --amqp-listen off --metrics-listen off >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    "$bin" topic list --server "$server" >/dev/null 2>&1 && break
    sleep 0.1
done

# The server's CPU time so far, in clock ticks: "user system".
cpu() { awk '{print $14, $15}' "/proc/$server_pid/stat"; }

# run NAME ARGS...: one `sluice bench` run; appends "NAME MB/s p50 p99 p99.9 user sys" to results.
run() {
    local name=$1
    shift
    local before after out
    before=$(cpu)
    out=$("$bin" bench "$@" --server "$server" 2>&1)
    after=$(cpu)
    local mbs p50 p99 p999
    mbs=$(awk '/^MB\/s/ {print $2}' <<<"$out")
    read -r p50 p99 p999 < <(awk '/^latency ms/ {print $4, $8, $10}' <<<"$out")
    read -r u0 s0 <<<"$before"
    read -r u1 s1 <<<"$after"
    printf '%-22s %9s MB/s  p50 %8s  p99 %8s  p99.9 %8s ms  server cpu %5.2f user %5.2f sys s\n' \
        "$name" "$mbs" "${p50:--}" "${p99:--}" "${p999:--}" \
        "$(awk "BEGIN {print ($u1-$u0)/100}")" "$(awk "BEGIN {print ($s1-$s0)/100}")"
    echo "$name $mbs" >>"$work/results"
}

for round in $(seq "$rounds"); do
    echo "== round $round"
    for flush in none fsync; do
        produce=(produce --records "$records" --batch-size 1000 --flush "$flush")
        run "produce-$flush-grpc" "${produce[@]}" --topic "g-$flush-$round"
        run "produce-$flush-kafka" "${produce[@]}" --topic "k-$flush-$round" --kafka "$kafka"
    done
    sync
    run "replay-grpc" consume --topic "k-none-$round"
    run "replay-kafka" consume --topic "k-none-$round" --kafka "$kafka"
done

echo "== medians (MB/s) and Kafka/gRPC"
for scenario in produce-none produce-fsync replay; do
    median() { grep "^$scenario-$1 " "$work/results" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    g=$(median grpc)
    k=$(median kafka)
    printf '%-14s gRPC %9s  Kafka %9s  Kafka/gRPC %5.2f\n' "$scenario" "$g" "$k" "$(awk "BEGIN {print $k/$g}")"
done
