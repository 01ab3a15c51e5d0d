#!/usr/bin/env bash
# What TLS costs: gRPC produce and replay with and without TLS, in the same run.
#
#   scripts/compare-tls.sh [SLUICE]        # default: target/release/sluice
#
# Makes a throwaway CA and server certificate with the openssl command, then for each of
# ROUNDS rounds (default 3) starts SLUICE twice on fresh data directories, once plaintext
# and once with --tls-cert/--tls-key, and on each: produces RECORDS 1 KiB records (default
# 1,000,000, about 1 GB) in requests of 1000 with flush.policy none, and replays them from
# offset 0. The two servers take turns, so drift of the machine hits both. It prints each
# run's throughput, latency percentiles and the server's CPU time, then each figure's median
# and the TLS/plaintext ratio. Nothing is downloaded or installed.
set -euo pipefail

bin=$(realpath "${1:-target/release/sluice}")
rounds=${ROUNDS:-3}
records=${RECORDS:-1000000}
port=${PORT:-50994}
work=$(mktemp -d)
server_pid=
trap '[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

# A CA and a certificate for localhost signed by it (P-256 keys, valid for a day).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=sluice-bench-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 1 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null

# stop: stops the running server, if any, and drops its data.
stop() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid"
        while kill -0 "$server_pid" 2>/dev/null; do sleep 0.1; done
        server_pid=
    fi
    rm -rf "$work"/data-*
}

# start NAME ARGS...: a fresh server on its own data directory.
start() {
    local name=$1
    shift
    stop
    "$bin" serve --data-dir "$work/data-$name" --listen "127.0.0.1:$port" --kafka-listen off \
        --amqp-listen off --metrics-listen off "$@" >"$work/$name.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 50); do
        "$bin" topic list "${client[@]}" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "the $name server did not start: $(cat "$work/$name.log")" >&2
    exit 1
}

# The server's CPU time so far, in clock ticks: "user system".
cpu() { awk '{print $14, $15}' "/proc/$server_pid/stat"; }

# run NAME ARGS...: one `sluice bench` run; appends "NAME MB/s" to results.
run() {
    local name=$1
    shift
    local before after out mbs p50 p99 p999
    before=$(cpu)
    out=$("$bin" bench "$@" "${client[@]}" 2>&1)
    after=$(cpu)
    mbs=$(awk '/^MB\/s/ {print $2}' <<<"$out")
    read -r p50 p99 p999 < <(awk '/^latency ms/ {print $4, $8, $10}' <<<"$out")
    read -r u0 s0 <<<"$before"
    read -r u1 s1 <<<"$after"
    printf '%-18s %9s MB/s  p50 %8s  p99 %8s  p99.9 %8s ms  server cpu %5.2f user %5.2f sys s\n' \
        "$name" "$mbs" "${p50:--}" "${p99:--}" "${p999:--}" \
        "$(awk "BEGIN {print ($u1-$u0)/100}")" "$(awk "BEGIN {print ($s1-$s0)/100}")"
    echo "$name $mbs" >>"$work/results"
}

for round in $(seq "$rounds"); do
    echo "== round $round"
    for transport in plaintext tls; do
        if [[ $transport == tls ]]; then
            client=(--server "https://localhost:$port" --ca-cert "$work/ca.pem")
            start tls --tls-cert "$work/server.pem" --tls-key "$work/server.key"
        else
            client=(--server "http://127.0.0.1:$port")
            start plaintext
        fi
        run "produce-$transport" produce --records "$records" --batch-size 1000 --flush none \
            --topic "bench-$round"
        sync
        run "replay-$transport" consume --topic "bench-$round"
    done
done
stop

echo "== medians (MB/s) and TLS/plaintext"
for scenario in produce replay; do
    median() { grep "^$scenario-$1 " "$work/results" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    p=$(median plaintext)
    t=$(median tls)
    printf '%-8s plaintext %9s  TLS %9s  TLS/plaintext %5.2f\n' "$scenario" "$p" "$t" "$(awk "BEGIN {print $t/$p}")"
done
