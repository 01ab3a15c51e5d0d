#!/usr/bin/env bash
# Compares Sluice with NATS JetStream and RabbitMQ on this machine, in one run:
#
#   produce 1 KiB x 1000      Sluice flush.policy=none | JetStream file stream | RabbitMQ stream
#   produce 100 B x 1000      same
#   durable produce 1 KiB     Sluice flush.policy=fsync | JetStream file stream (NATS 2.9 acks
#                             before any fsync) | RabbitMQ classic durable queue, persistent
#                             messages, publisher confirms
#   replay 1 KiB from start   what "produce 1 KiB" wrote in the same round
#   latency at 1,000 rec/s    1 KiB, one record per send: produce -> ack, and produce -> consumer
#   share 1 KiB, 4 members    work sharing with explicit acknowledgement: SHARE_RECORDS records of
#                             1 KiB stored first (not measured), then 4 members of a Sluice share
#                             group (`sluice bench share`, prefetch 1000, one durable commit of
#                             acceptances per poll) | 4 consumers of a RabbitMQ classic durable
#                             queue of persistent messages (basic.qos 1000, manual acks, one
#                             basic.ack multiple=true per 100 deliveries); until all are accepted
#
#   iggy                      Apache Iggy 0.8.0 beside Sluice with Iggy's bench shape: 1000 B and
#                             100 B records in batches of 1000, ONE batch in flight, fsync and no
#                             fsync; produce, then replay from offset 0 (see "Iggy" below)
#
# Every workload runs against each system in turn (sluice, nats, rabbitmq, then the next
# workload), for ROUNDS rounds; the table shows the median of the rounds and the ratio
# Sluice/peer. The same run measures the machine's limits: buffered sequential writes and
# writes with fdatasync every MiB (fio, else dd), and loopback TCP (iperf3, if installed).
#
# Installs nats-server, rabbitmq-server, fio and iperf3 from the Debian packages if missing,
# builds `sluice` (release) and the peer load generator (scripts/peers, outside the workspace;
# both under CARGO_TARGET_DIR if set, else target/),
# starts every server on 127.0.0.1 with its data under target/compare-peers/, and stops them at
# the end. Writes target/compare-peers/results.md (and raw.jsonl, every run's summary).
#
# Environment: ROUNDS (default 3), RUN_SECONDS per throughput run (default 5),
# LATENCY_RECORDS per latency run (default 5000, i.e. 5 s at 1,000/s), SHARE_RECORDS per share
# run (default 1000000), WORKLOADS: which groups of workloads to run, "log" (every row above but
# the last), "share" (share groups), "iggy" (beside Apache Iggy) or any of them separated by
# spaces (default "log share iggy").
#
# Iggy: set IGGY_SERVER and IGGY_BENCH to the `iggy-server` and `iggy-bench` binaries built from
# Apache Iggy's source at tag server-0.8.0 (`cargo +stable build --release -p server -p
# iggy-bench`, which needs Debian's libhwloc-dev, libudev-dev and pkg-config). Without them the Iggy workloads
# say how to get them and are skipped; nothing is downloaded. IGGY_RECORDS (default 1000000)
# records of 1000 B per produce run, ten times as many of 100 B. Iggy runs with its stock
# configuration (built in), its data in a fresh directory per run, `enforce_fsync` set for
# the fsync rows; Sluice with `sluice bench --in-flight 1 --encoding batch`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/compare-peers
ROUNDS=${ROUNDS:-3}
RUN_SECONDS=${RUN_SECONDS:-5}
LATENCY_RECORDS=${LATENCY_RECORDS:-5000}
SHARE_RECORDS=${SHARE_RECORDS:-1000000}
WORKLOADS=${WORKLOADS:-log share iggy}
IGGY_RECORDS=${IGGY_RECORDS:-1000000}
IGGY_SERVER=${IGGY_SERVER:-}
IGGY_BENCH=${IGGY_BENCH:-}
runs() { [[ " $WORKLOADS " == *" $1 "* ]]; }
NATS_PORT=4222
NATS_MONITOR_PORT=8222
AMQP_PORT=5672
STREAM_PORT=5552
RABBIT_DIST_PORT=25672

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- install -------------------------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=()
if runs log || runs share; then
  command -v nats-server >/dev/null || missing+=(nats-server)
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
fi
command -v fio >/dev/null || missing+=(fio)
command -v iperf3 >/dev/null || missing+=(iperf3)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package may start a system-wide node; this script runs its own, loopback only.
  $SUDO systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
fi
RABBITMQCTL=/usr/lib/rabbitmq/bin/rabbitmqctl

# ---- build ---------------------------------------------------------------------------------
log "building sluice (release) and the peer load generator"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --workspace --quiet
if runs log || runs share; then
  cargo build --release --quiet --locked --manifest-path scripts/peers/Cargo.toml --target-dir "$TARGET/peers"
fi
SLUICE=$TARGET/release/sluice
PEER=$TARGET/peers/release/peerbench

rm -rf "$OUT"
mkdir -p "$OUT"
RAW=$OUT/raw.jsonl
: > "$RAW"

# ---- servers -------------------------------------------------------------------------------
SLUICE_PID="" NATS_PID="" BEAM_PID="" EPMD_PID="" IGGY_PID=""
stop_servers() {
  for pid in $SLUICE_PID $NATS_PID $BEAM_PID $IGGY_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $SLUICE_PID $NATS_PID $BEAM_PID $IGGY_PID; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  done
  [ -z "$EPMD_PID" ] || kill "$EPMD_PID" 2>/dev/null || true
}
trap stop_servers EXIT

wait_port() { # host port seconds
  for _ in $(seq $(($3 * 10))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on $1:$2 after $3 s"; return 1
}

if runs iggy && { [ ! -x "$IGGY_SERVER" ] || [ ! -x "$IGGY_BENCH" ]; }; then
  log "skipping the Iggy workloads: set IGGY_SERVER and IGGY_BENCH to iggy-server and iggy-bench"
  log "  built from github.com/apache/iggy at tag server-0.8.0:"
  log "  git checkout server-0.8.0 && cargo +stable build --release -p server -p iggy-bench"
  log "  (needs Debian's libhwloc-dev, libudev-dev and pkg-config); then IGGY_SERVER=.../target/release/iggy-server"
  log "  IGGY_BENCH=.../target/release/iggy-bench"
  WORKLOADS=${WORKLOADS//iggy/}
fi

log "starting sluice"
"$SLUICE" serve --data-dir "$OUT/sluice-data" --listen 127.0.0.1:0 --amqp-listen off --log warn > "$OUT/sluice.log" 2>&1 &
SLUICE_PID=$!
for _ in $(seq 300); do grep -q 'listening on' "$OUT/sluice.log" && break; sleep 0.1; done
SLUICE_URL=http://$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$OUT/sluice.log" | head -1)
[ "$SLUICE_URL" != "http://" ] || { log "sluice did not start: $(cat "$OUT/sluice.log")"; exit 1; }

if runs log || runs share; then
log "starting nats-server and rabbitmq-server"
mkdir -p "$OUT/nats/store"
cat > "$OUT/nats/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$NATS_MONITOR_PORT
max_payload: 1MB
jetstream {
  store_dir: "$OUT/nats/store"
  max_memory_store: 1GB
  max_file_store: 100GB
}
CONF
nats-server -c "$OUT/nats/nats.conf" -l "$OUT/nats/nats.log" &
NATS_PID=$!
wait_port 127.0.0.1 $NATS_PORT 30

R=$OUT/rabbit
mkdir -p "$R/mnesia" "$R/log"
cat > "$R/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
stream.listeners.tcp.1 = 127.0.0.1:$STREAM_PORT
stream.advertised_host = 127.0.0.1
loopback_users = none
CONF
echo '[rabbitmq_stream].' > "$R/enabled_plugins"
printf 'compare-peers-cookie' > "$R/.erlang.cookie"
chmod 400 "$R/.erlang.cookie"
rabbit_env() {
  env HOME="$R" RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_CONFIG_FILE="$R/rabbitmq.conf" \
    RABBITMQ_MNESIA_BASE="$R/mnesia" RABBITMQ_LOG_BASE="$R/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$R/enabled_plugins" RABBITMQ_PID_FILE="$R/beam.pid" \
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" "$@"
}
epmd_before=$(pgrep -x epmd || true)
rabbit_env setsid /usr/lib/rabbitmq/bin/rabbitmq-server > "$R/log/console.log" 2>&1 < /dev/null &
rabbit_env timeout 120 "$RABBITMQCTL" wait "$R/beam.pid" --timeout 120 >/dev/null
BEAM_PID=$(cat "$R/beam.pid")
[ -n "$epmd_before" ] || EPMD_PID=$(pgrep -x epmd || true)
wait_port 127.0.0.1 $STREAM_PORT 60
log "nats-server pid $NATS_PID, rabbitmq beam pid $BEAM_PID"
fi
log "sluice $SLUICE_URL (pid $SLUICE_PID)"

# ---- physical limits -----------------------------------------------------------------------
PHYS=$OUT/phys
mkdir -p "$PHYS"
limits=()
fio_mb() { # fio args...: prints the write bandwidth in MB/s
  fio --directory="$PHYS" --ioengine=psync --rw=write --bs=1M --output-format=json "$@" |
    jq -r '.jobs[0].write.bw_bytes / 1e6 | floor'
}
if command -v fio >/dev/null; then
  log "fio: buffered 1 MiB writes, then 1 MiB writes each followed by fdatasync"
  buffered=$(fio_mb --name=buffered --size=2G --end_fsync=1 --runtime=30)
  synced=$(fio_mb --name=fdatasync --size=1G --fdatasync=1 --runtime=20)
  limits+=("| sequential 1 MiB writes, buffered, fsync at the end (fio, 2 GiB) | $buffered MB/s |")
  limits+=("| sequential 1 MiB writes, fdatasync after each (fio, up to 1 GiB or 20 s) | $synced MB/s |")
else
  log "dd: buffered 1 MiB writes, then O_DSYNC 1 MiB writes"
  dd_mb() { dd if=/dev/zero of="$PHYS/dd" bs=1M "$@" 2>&1 | awk '/copied/ { print int($(NF-1) * ($NF == "GB/s" ? 1000 : 1)) }'; }
  buffered=$(dd_mb count=2048 conv=fdatasync)
  synced=$(dd_mb count=512 oflag=dsync)
  limits+=("| sequential 1 MiB writes, buffered, fdatasync at the end (dd, 2 GiB) | $buffered MB/s |")
  limits+=("| sequential 1 MiB writes, O_DSYNC (dd, 512 MiB) | $synced MB/s |")
fi
rm -rf "$PHYS"
if command -v iperf3 >/dev/null; then
  log "iperf3: loopback TCP, one stream, 5 s"
  iperf3 -s -B 127.0.0.1 -p 5299 >/dev/null 2>&1 &
  IPERF_PID=$!
  for _ in $(seq 100); do ss -ltn | grep -q '127.0.0.1:5299 ' && break; sleep 0.1; done
  loopback=$(iperf3 -c 127.0.0.1 -p 5299 -t 5 -J | jq -r '.end.sum_received.bits_per_second / 8e6 | floor')
  kill "$IPERF_PID" 2>/dev/null || true
  wait "$IPERF_PID" 2>/dev/null || true
  limits+=("| loopback TCP, one stream (iperf3, 5 s) | $loopback MB/s |")
fi

# ---- workloads -----------------------------------------------------------------------------
# record WORKLOAD SYSTEM JSON: appends one run's summary to raw.jsonl.
record() {
  if [ -z "$3" ]; then log "  $1 / $2: FAILED (see $OUT/errors.log)"; return; fi
  jq -c --arg w "$1" --arg s "$2" --argjson r "$round" '. + {workload: $w, system: $s, round: $r}' <<<"$3" >> "$RAW"
  log "  $1 / $2: $(jq -r '"\(.records_per_sec | floor) rec/s, \(.mb_per_sec * 10 | floor / 10) MB/s, p99 \(.latency_ms.p99) ms"' <<<"$3")"
}
sb() { "$SLUICE" bench "$@" --server "$SLUICE_URL" --output json 2>>"$OUT/errors.log" || true; }
fresh_topic() { "$SLUICE" topic delete "$1" --server "$SLUICE_URL" >/dev/null 2>&1 || true; }
pb() { "$PEER" "$@" 2>>"$OUT/errors.log" || true; }
# Iggy: a fresh server per run, stock configuration, enforce_fsync as asked ($1: true|false).
IGGY_PORT=8090
iggy_start() {
  rm -rf "$OUT/iggy-data"
  env IGGY_SYSTEM_PATH="$OUT/iggy-data" IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy \
    IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC="$1" "$IGGY_SERVER" > "$OUT/iggy.log" 2>&1 &
  IGGY_PID=$!
  wait_port 127.0.0.1 $IGGY_PORT 60
}
iggy_stop() {
  kill "$IGGY_PID" 2>/dev/null || true
  wait "$IGGY_PID" 2>/dev/null || true
  IGGY_PID=""
  rm -rf "$OUT/iggy-data"
}
# iggy_bench SIZE RECORDS KIND ACTORS...: one iggy-bench run (batches of 1000, one in flight per
# actor), its summary line turned into the JSON `sluice bench` prints.
iggy_bench() {
  local size=$1 records=$2 kind=$3
  shift 3
  "$IGGY_BENCH" -u iggy -p iggy -m "$size" -P 1000 -b $((records / 1000)) "$kind" --streams 1 "$@" \
    tcp --server-address 127.0.0.1:$IGGY_PORT 2>>"$OUT/errors.log" | sed 's/\x1b\[[0-9;]*m//g' |
    grep -E '(Producers|Consumers) Results: Total throughput' | head -1 |
    sed -E 's/.* ([0-9.]+) messages\/s.*p50 latency: ([0-9.]+) ms.*p99 latency: ([0-9.]+) ms, p999 latency: ([0-9.]+) ms.*max: ([0-9.]+) ms.*total time: ([0-9.]+) s.*/\1 \2 \3 \4 \5 \6/' |
    awk -v size="$size" -v records="$records" 'NF == 6 { printf "{\"mode\":\"iggy\",\"records\":%d,\"bytes\":%d,\"seconds\":%s,\"records_per_sec\":%s,\"mb_per_sec\":%s,\"latency_ms\":{\"p50\":%s,\"p99\":%s,\"p999\":%s,\"max\":%s}}\n", records, records * size, $6, $1, $1 * size / 1e6, $2, $3, $4, $5 }'
}
UNBOUNDED=1000000000
# Closed-loop settings of the peers, as in their published client examples: NATS publishes
# asynchronously with up to 4000 acknowledgements outstanding; the RabbitMQ stream client sends
# batches of 100 with up to 50 batches unconfirmed; the classic queue up to 4000 unconfirmed.
NATS_WINDOW=(--window 4000)
STREAM_WINDOW=(--batch-size 100 --window 50)

for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  if runs share; then
    w="share 1 KiB, 4 members"
    fresh_topic share
    record "$w" sluice "$(sb share --topic share --partitions 4 --flush fsync --record-size 1024 --batch-size 1000 --records "$SHARE_RECORDS" --consumers 4 --prefetch 1000)"
    fresh_topic share
    record "$w" rabbitmq "$(pb queue work --name work --record-size 1024 --window 4000 --records "$SHARE_RECORDS" --consumers 4 --prefetch 1000 --ack-every 100)"
  fi
  if runs iggy; then
    for shape in "1000 none" "100 none" "1000 fsync"; do
      read -r size flush <<<"$shape"
      records=$IGGY_RECORDS
      [ "$size" = 100 ] && records=$((IGGY_RECORDS * 10))
      w="$size B x1000, one in flight, $([ "$flush" = fsync ] && echo "fsync before ack" || echo "no fsync")"
      # Odd rounds run Iggy first, even rounds Sluice; each produce starts with nothing
      # dirty in the page cache, so neither inherits the other's write-back.
      for system in $([ $((round % 2)) = 1 ] && echo "iggy sluice" || echo "sluice iggy"); do
        sync
        if [ "$system" = iggy ]; then
          iggy_start "$([ "$flush" = fsync ] && echo true || echo false)"
          record "produce $w" iggy "$(iggy_bench "$size" "$records" pinned-producer --producers 1)"
          [ "$size$flush" = 1000none ] && record "replay $w" iggy "$(iggy_bench "$size" "$records" pinned-consumer --consumers 1)"
          iggy_stop
        else
          fresh_topic iggy
          record "produce $w" sluice "$(sb produce --topic iggy --flush "$flush" --record-size "$size" --batch-size 1000 --in-flight 1 --encoding batch --records "$records")"
          [ "$size$flush" = 1000none ] && record "replay $w" sluice "$(sb consume --topic iggy)"
          fresh_topic iggy
        fi
      done
    done
  fi
  runs log || continue
  declare -A produced=()
  for size in 1024 100; do
    w="produce $([ $size = 1024 ] && echo "1 KiB" || echo "100 B") x1000"
    fresh_topic "p$size"
    record "$w" sluice "$(sb produce --topic "p$size" --flush none --record-size $size --batch-size 1000 --duration "$RUN_SECONDS" --records $UNBOUNDED)"
    out=$(pb nats produce --name "p$size" --record-size $size "${NATS_WINDOW[@]}" --duration "$RUN_SECONDS" --records $UNBOUNDED)
    record "$w" nats "$out"; produced[nats$size]=$(jq .records <<<"$out")
    out=$(pb stream produce --name "p$size" --record-size $size "${STREAM_WINDOW[@]}" --duration "$RUN_SECONDS" --records $UNBOUNDED)
    record "$w" rabbitmq "$out"; produced[rabbitmq$size]=$(jq .records <<<"$out")
  done

  w="durable produce 1 KiB"
  fresh_topic durable
  record "$w" sluice "$(sb produce --topic durable --flush fsync --record-size 1024 --batch-size 1000 --duration "$RUN_SECONDS" --records $UNBOUNDED)"
  record "$w" nats "$(pb nats produce --name durable --record-size 1024 "${NATS_WINDOW[@]}" --duration "$RUN_SECONDS" --records $UNBOUNDED)"
  record "$w" rabbitmq "$(pb queue produce --name durable --record-size 1024 --window 4000 --duration "$RUN_SECONDS" --records $UNBOUNDED)"

  w="replay 1 KiB from start"
  record "$w" sluice "$(sb consume --topic p1024)"
  record "$w" nats "$(pb nats consume --name p1024 --record-size 1024 --records "${produced[nats1024]}")"
  record "$w" rabbitmq "$(pb stream consume --name p1024 --record-size 1024 --records "${produced[rabbitmq1024]}")"
  for name in p1024 p100 durable; do fresh_topic $name; done

  for mode in produce e2e; do
    w="$mode latency @1000/s 1 KiB"
    fresh_topic "lat-$mode"
    record "$w" sluice "$(sb "$mode" --topic "lat-$mode" --flush none --record-size 1024 --batch-size 1 --rate 1000 --records "$LATENCY_RECORDS")"
    record "$w" nats "$(pb nats "$mode" --name "lat$mode" --record-size 1024 --rate 1000 --records "$LATENCY_RECORDS")"
    record "$w" rabbitmq "$(pb stream "$mode" --name "lat$mode" --record-size 1024 --rate 1000 --records "$LATENCY_RECORDS")"
    fresh_topic "lat-$mode"
  done
done

# ---- table ---------------------------------------------------------------------------------
versions="sluice $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if runs log || runs share; then
  versions+="; $(nats-server --version); RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')"
fi
runs iggy && versions+="; Apache Iggy $("$IGGY_SERVER" --version 2>/dev/null | head -1 || echo 'iggy-server ?')"
disk=$(findmnt -n -o SOURCE,FSTYPE -T "$OUT" | tr -s ' ')
{
  echo "# Sluice and its peers on this machine"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory,"
  echo "Linux $(uname -r), data on $disk; $versions. Median of $ROUNDS rounds, workloads interleaved."
  echo "Command: \`ROUNDS=$ROUNDS RUN_SECONDS=$RUN_SECONDS LATENCY_RECORDS=$LATENCY_RECORDS SHARE_RECORDS=$SHARE_RECORDS WORKLOADS=\"$WORKLOADS\" scripts/compare-peers.sh\`"
  echo
  echo "| physical limit, same run | |"
  echo "|---|---:|"
  printf '%s\n' "${limits[@]}"
  echo
  if runs log || runs share; then
  jq -rs -f /dev/stdin "$RAW" <<'JQ'
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
  else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def metric($m): if $m == "rps" then .records_per_sec elif $m == "mbps" then .mb_per_sec
  elif $m == "replay_mbps" then .records_per_sec * 1024 / 1e6
  elif $m == "p50" then .latency_ms.p50 else .latency_ms.p99 end;
def show: if . == null then "–" elif . >= 100 then (round | tostring)
  elif . >= 10 then (. * 10 | round / 10 | tostring) else (. * 1000 | round / 1000 | tostring) end;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then "–"
  else ($a / $b * 100 | round / 100 | tostring) + "×" end;
. as $runs
| "| workload | figure | Sluice | NATS JetStream | RabbitMQ | Sluice/NATS | Sluice/RabbitMQ |",
  "|---|---|---:|---:|---:|---:|---:|",
  ( [ ["produce 1 KiB x1000", "records/s", "rps"],
      ["produce 1 KiB x1000", "MB/s (payload)", "mbps"],
      ["produce 100 B x1000", "records/s", "rps"],
      ["durable produce 1 KiB", "records/s", "rps"],
      ["durable produce 1 KiB", "MB/s (payload)", "mbps"],
      ["replay 1 KiB from start", "records/s", "rps"],
      ["replay 1 KiB from start", "MB/s (payload)", "replay_mbps"],
      ["produce latency @1000/s 1 KiB", "p50 ms", "p50"],
      ["produce latency @1000/s 1 KiB", "p99 ms", "p99"],
      ["e2e latency @1000/s 1 KiB", "p50 ms", "p50"],
      ["e2e latency @1000/s 1 KiB", "p99 ms", "p99"],
      ["share 1 KiB, 4 members", "records/s accepted", "rps"],
      ["share 1 KiB, 4 members", "MB/s accepted (payload)", "mbps"],
      ["share 1 KiB, 4 members", "p50 ms delivery to ack", "p50"],
      ["share 1 KiB, 4 members", "p99 ms delivery to ack", "p99"] ][]
    | . as [$w, $fig, $m]
    | select(any($runs[]; .workload == $w))
    | [ "sluice", "nats", "rabbitmq"
        | . as $s | [ $runs[] | select(.workload == $w and .system == $s) | metric($m) ] | median ]
    | "| \($w) | \($fig) | \(.[0] | show) | \(.[1] | show) | \(.[2] | show) | \(ratio(.[0]; .[1])) | \(ratio(.[0]; .[2])) |" )
JQ
  echo
  echo "Ratios above 1 favour Sluice for rates; for latencies lower is better, so below 1 favours Sluice."
  echo "RabbitMQ is a stream (rabbitmq_stream plugin) except in \"durable produce\" and \"share\", where it"
  echo "is a classic durable queue with persistent messages (and publisher confirms, acknowledged after"
  echo "fsync). Sluice fsyncs before acknowledging a produce only in \"durable produce\" and in the filling"
  echo "of \"share\" (flush.policy=fsync); NATS 2.9 JetStream acknowledges once written to the OS in every"
  echo "row. Sluice replay MB/s counts payload here."
  echo "In \"share\", a Sluice acceptance counts once the server has stored it durably (fsynced share"
  echo "state) and its latency runs from the poll that returned the record to that answer; RabbitMQ"
  echo "does not answer acks, so its latency runs from the delivery to the ack being sent."
  fi
  if runs iggy; then
    echo
    echo "Beside Apache Iggy, its bench's shape: batches of 1000, one batch in flight, one partition;"
    echo "MB/s of payload; latency per batch (produce: until acknowledged; replay: per poll or"
    echo "streamed message)."
    echo
    jq -rs -f /dev/stdin "$RAW" <<'JQ'
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
  else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def show: if . == null then "–" elif . >= 100 then (round | tostring)
  elif . >= 10 then (. * 10 | round / 10 | tostring) else (. * 1000 | round / 1000 | tostring) end;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then "–"
  else ($a / $b * 100 | round / 100 | tostring) + "×" end;
def figure($f; $size): if $f == "mbps" then .records_per_sec * $size / 1e6 else .latency_ms[$f] end;
. as $runs
| "| workload | figure | Sluice | Iggy | Sluice/Iggy |",
  "|---|---|---:|---:|---:|",
  ( [ $runs[] | select(.system == "iggy") | .workload ] | unique[] as $w
    | ($w | capture("^[a-z]+ (?<size>[0-9]+) B").size | tonumber) as $size
    | ( ["MB/s (payload)", "mbps"], ["p50 ms", "p50"], ["p99 ms", "p99"], ["p99.9 ms", "p999"] )
    | . as [$fig, $f]
    | [ "sluice", "iggy"
        | . as $s | [ $runs[] | select(.workload == $w and .system == $s) | figure($f; $size) ]
        | median ]
    | "| \($w) | \($fig) | \(.[0] | show) | \(.[1] | show) | \(ratio(.[0]; .[1])) |" )
JQ
  fi
} > "$OUT/results.md"
cat "$OUT/results.md"
log "wrote $OUT/results.md and $RAW"
