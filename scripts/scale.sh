#!/usr/bin/env bash
# How Sluice's costs grow with partitions, connections and data, on this machine:
#
#   idle partitions   PARTITIONS partitions (topics of 1000), one record each, then idle:
#                     resident memory and open file descriptors, before and after a restart,
#                     and how long the restart took
#   connections       CONNECTIONS producers on their own connections, one record per second
#                     each: resident memory and file descriptors while they run
#   partitions        produce throughput of 100 producers over 1, 100 and 1000 partitions
#   start-up          time from start to serving after a clean stop and after SIGKILL, for
#                     DATA_GB (space-separated sizes in GB, default "1 4") of 1 KiB records
#                     (flush.policy none: a killed server recovers its unflushed tail)
#
#   soak              SOAK_MINUTES (default 30) one-minute runs back to back of `sluice bench
#                     e2e` at SOAK_RATE records/s (default 2000, 1 KiB, one record per
#                     request): end-to-end p50/p99 and the server's RSS after each minute
#
# Usage: scripts/scale.sh [SLUICE]   (default target/release/sluice, built if missing)
# Environment: PARTS (default "partitions connections spread startup"; add or give "soak"),
# PARTITIONS (default 10000), CONNECTIONS (default 1000), DATA_GB (default "1 4"),
# SOAK_MINUTES, SOAK_RATE.
# Data under target/scale/ (each part's removed after it; errors.log and server.log stay); the
# table goes to standard output.
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE=${1:-target/release/sluice}
PARTITIONS=${PARTITIONS:-10000}
CONNECTIONS=${CONNECTIONS:-1000}
DATA_GB=${DATA_GB:-1 4}
PARTS=${PARTS:-partitions connections spread startup}
SOAK_MINUTES=${SOAK_MINUTES:-30}
SOAK_RATE=${SOAK_RATE:-2000}
runs() { [[ " $PARTS " == *" $1 "* ]]; }
OUT=$PWD/target/scale
PORT=50977
URL=http://127.0.0.1:$PORT
[ -x "$SLUICE" ] || cargo build --release -p sluice --quiet
rm -rf "$OUT"
mkdir -p "$OUT"
# Enough descriptors for every connection and segment file.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
PID=""
trap '[ -z "$PID" ] || kill -9 "$PID" 2>/dev/null || true' EXIT

# start: starts the server on $OUT/data; STARTED_IN is then the seconds until it served.
STARTED_IN=""
start() {
  local begin
  begin=$(date +%s.%N)
  "$SLUICE" serve --data-dir "$OUT/data" --listen 127.0.0.1:$PORT --kafka-listen off \
    --amqp-listen off --metrics-listen off --log info > "$OUT/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 6000); do
    grep -q '"serving"\|serving' "$OUT/server.log" && "$SLUICE" topic list --server "$URL" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { log "the server exited: $(tail -3 "$OUT/server.log")"; exit 1; }
    sleep 0.05
  done
  STARTED_IN=$(echo "$(date +%s.%N) - $begin" | bc -l | xargs printf '%.2f')
}
stop() { # stop TERM|KILL
  kill "-$1" "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}
# Resident memory: all, and the anonymous part (the rest is segment pages mapped for reading,
# page cache the kernel can take back).
rss_mb() {
  awk '/^VmRSS/ { all = $2 } /^RssAnon/ { anon = $2 }
    END { printf "%.0f (anonymous %.0f)", all / 1024, anon / 1024 }' "/proc/$PID/status"
}
fds() { find "/proc/$PID/fd" -mindepth 1 2>/dev/null | wc -l; }
bench() { "$SLUICE" bench "$@" --server "$URL" --output json 2>>"$OUT/errors.log"; }

rows=()
row() { rows+=("| $1 | $2 |"); log "$1: $2"; }

# ---- idle partitions ---------------------------------------------------------------------
if runs partitions; then
log "idle partitions: $PARTITIONS"
start
row "RSS, fresh server" "$(rss_mb) MB, $(fds) file descriptors"
topics=$(((PARTITIONS + 999) / 1000))
begin=$(date +%s.%N)
created=0
for t in $(seq "$topics"); do
  # A topic the server cannot open every partition of fails; what it said is the result.
  if ! failed=$("$SLUICE" bench produce --server "$URL" --topic "idle-$t" --partitions 1000 \
      --flush none --records 1000 --batch-size 1 --record-size 100 --in-flight 64 \
      --encoding batch --output json 2>&1 >/dev/null); then
    row "topic $t of 1000 partitions" "refused: $(tail -1 <<<"$failed")"
    break
  fi
  created=$((created + 1000))
done
row "$created partitions created, one record each" "$(echo "$(date +%s.%N) - $begin" | bc -l | xargs printf '%.1f') s ($(ulimit -n) file descriptors allowed)"
sleep 15
row "$created partitions, idle 15 s" "$(rss_mb) MB RSS, $(fds) file descriptors"
stop TERM
start
row "restart with $created partitions (clean stop)" "$STARTED_IN s to serve"
row "$created partitions after the restart" "$(rss_mb) MB RSS, $(fds) file descriptors"
stop TERM
rm -rf "$OUT/data"
fi

# ---- connections -------------------------------------------------------------------------
if runs connections; then
log "connections: $CONNECTIONS"
start
bench produce --topic conns --partitions 8 --flush none --producers "$CONNECTIONS" \
  --rate "$CONNECTIONS" --batch-size 1 --record-size 100 --duration 25 > "$OUT/conns.json" &
BENCH=$!
sleep 20
row "$CONNECTIONS connections, one record/s each" "$(rss_mb) MB RSS, $(fds) file descriptors"
wait "$BENCH" || true
row "$CONNECTIONS connections: produce latency p50 / p99" "$(jq -r '"\(.latency_ms.p50) / \(.latency_ms.p99) ms"' "$OUT/conns.json")"
stop TERM
rm -rf "$OUT/data"
fi

# ---- partitions under load ---------------------------------------------------------------
if runs spread; then
start
for n in 1 100 1000; do
  log "100 producers over $n partitions"
  out=$(bench produce --topic "spread-$n" --partitions "$n" --flush none --producers 100 \
    --batch-size 100 --record-size 1024 --encoding batch --duration 10 --records 1000000000)
  row "produce, 100 producers over $n partitions (1 KiB, batches of 100)" \
    "$(jq -r '"\(.mb_per_sec | floor) MB/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"' <<<"$out")"
  "$SLUICE" topic delete "spread-$n" --server "$URL" >/dev/null
done
stop TERM
rm -rf "$OUT/data"
fi

# ---- start-up and recovery ---------------------------------------------------------------
if runs startup; then
for gb in $DATA_GB; do
  log "start-up with $gb GB"
  start
  bench produce --topic data --partitions 4 --flush none --record-size 1024 --batch-size 1000 \
    --encoding batch --records $((gb * 1000000000 / 1024)) >/dev/null
  stop TERM
  start
  row "start after a clean stop, $gb GB" "$STARTED_IN s"
  bench produce --topic data --flush none --record-size 1024 --batch-size 1000 \
    --encoding batch --records 250000 >/dev/null
  stop KILL
  start
  row "start after SIGKILL, $gb GB (the last 256 MB unflushed)" "$STARTED_IN s"
  stop TERM
  rm -rf "$OUT/data"
done
fi

# ---- soak --------------------------------------------------------------------------------
if runs soak; then
  start
  for minute in $(seq "$SOAK_MINUTES"); do
    out=$(bench e2e --topic soak --flush none --record-size 1024 --batch-size 1 \
      --rate "$SOAK_RATE" --duration 60 --records 1000000000)
    row "soak minute $minute, $SOAK_RATE records/s: e2e p50 / p99 / p99.9" \
      "$(jq -r '"\(.latency_ms.p50) / \(.latency_ms.p99) / \(.latency_ms.p999) ms"' <<<"$out"), $(rss_mb) MB RSS, $(fds) fds"
  done
  stop TERM
  rm -rf "$OUT/data"
fi

echo "| measurement | result |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
