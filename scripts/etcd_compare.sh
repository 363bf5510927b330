#!/usr/bin/env bash
# Side by side: a 3-member etcd cluster and a 3-node `consensus node`
# cluster on loopback, data on the same disk, driven by the same load
# generator (tests/src/bin/kvload.rs: our HTTP API, etcd's v3 JSON gateway)
# with the same clients and value size. Prints one JSON line per run and a
# Markdown table (writes/s, linearizable reads/s, p50/p99 latency).
#
#   scripts/etcd_compare.sh                 # 64 clients, 10 s per run, 256-byte values
#   CLIENTS=16 DURATION=5 VALUE=100 scripts/etcd_compare.sh
#
# Installs Debian's etcd-server when etcd is absent (needs root and apt).
# The data directories go under target/etcd-compare (the checkout's disk).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-10}
VALUE=${VALUE:-256}
KEYS=${KEYS:-10000}

if ! command -v etcd >/dev/null 2>&1; then
  echo "== installing etcd-server (Debian)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi

echo "== building (release)" >&2
cargo build --release --locked -q -p consensus-engine --bin consensus
cargo build --release --locked -q -p consensus-tests --bin kvload
BIN=target/release

WORK=target/etcd-compare
rm -rf "$WORK"
mkdir -p "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_http() { # URL: polls until it answers 200, 20 s at most
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

load() { # TARGET ENDPOINTS OP
  "$BIN/kvload" --target "$1" --endpoints "$2" --op "$3" --clients "$CLIENTS" \
    --duration-s "$DURATION" --value-bytes "$VALUE" --keys "$KEYS" | tail -1 | tee -a "$WORK/results.jsonl"
}

echo "== etcd $(etcd --version | head -1 | awk '{print $3}'), 3 members" >&2
CLUSTER=e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token compare \
    --logger zap --log-level error >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2 3; do wait_http "http://127.0.0.1:2379$i/health"; done
ETCD=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
load etcd "$ETCD" write
load etcd "$ETCD" read
cleanup
PIDS=()

echo "== consensus node, 3 nodes" >&2
head -c 32 /dev/urandom | base64 >"$WORK/cluster.key"
P=1=127.0.0.1:27001/127.0.0.1:28001,2=127.0.0.1:27002/127.0.0.1:28002,3=127.0.0.1:27003/127.0.0.1:28003
for i in 1 2 3; do
  "$BIN/consensus" node --id "$i" --listen "127.0.0.1:2700$i" --http "127.0.0.1:2800$i" \
    --peers "$P" --data-dir "$WORK/node$i" --cluster-key-file "$WORK/cluster.key" \
    --http-workers 2 >"$WORK/node$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2 3; do wait_http "http://127.0.0.1:2800$i/status"; done
for _ in $(seq 1 200); do
  if curl -fsS http://127.0.0.1:28001/status | grep -q '"leader":[0-9]'; then break; fi
  sleep 0.1
done
NODES=127.0.0.1:28001,127.0.0.1:28002,127.0.0.1:28003
load consensus "$NODES" write
load consensus "$NODES" read
cleanup
PIDS=()

echo
echo "| system | op | clients | value bytes | ops/s | p50 µs | p99 µs | errors |"
echo "|---|---|---|---|---|---|---|---|"
sed -E 's/.*"target":"([^"]*)","op":"([^"]*)","clients":([0-9]*),"value_bytes":([0-9]*),"ops":[0-9]*,"errors":([0-9]*),"secs":[0-9.]*,"ops_per_sec":([0-9]*),"latency_us":\{"p50":([0-9]*),"p99":([0-9]*).*/| \1 | \2 | \3 | \4 | \6 | \7 | \8 | \5 |/' "$WORK/results.jsonl"
