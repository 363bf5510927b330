#!/usr/bin/env bash
# Side by side on this machine: a 3-member etcd cluster and a 3-node
# `consensus node` cluster on loopback, their data on the same disk, driven
# by the same load generator (`consensus load`), the same clients, keys and
# value size. Prints one table (markdown) of writes/s, linearizable
# reads/s and p50/p99 latency for both.
#
#   scripts/etcd_compare.sh [--clients C] [--duration SECS] [--value-size B] [--only etcd|consensus]
#
# Installs Debian's etcd-server when etcd is absent (needs root or sudo).
# Builds the release `consensus` binary. Leaves nothing running.
set -euo pipefail

clients=64
duration=10
value_size=256
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --value-size) value_size="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "etcd_compare: unknown argument $1" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="$(mktemp -d "${TMPDIR:-/tmp}/etcd-compare.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v etcd >/dev/null 2>&1 && [ "$only" != consensus ]; then
  echo "etcd_compare: installing Debian's etcd-server" >&2
  sudo_=""
  [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q etcd-server >/dev/null
fi

cargo build --release -q -p consensus-engine
bin="$root/target/release/consensus"

# Waits until URL answers (any HTTP status) or 30 s pass.
wait_http() {
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null -m 1 "$1"; then return 0; fi
    sleep 0.1
  done
  echo "etcd_compare: $1 never answered" >&2
  return 1
}

# Runs the two loads (writes only, then 90% reads) against TARGETS with API
# and prints two table rows for NAME.
measure() {
  local name="$1" api="$2" targets="$3"
  local w r
  w="$("$bin" load --api "$api" --targets "$targets" --clients "$clients" \
        --duration "$duration" --value-size "$value_size" --reads 0 --json | tail -1)"
  r="$("$bin" load --api "$api" --targets "$targets" --clients "$clients" \
        --duration "$duration" --value-size "$value_size" --reads 0.9 --json | tail -1)"
  python3 - "$name" "$w" "$r" <<'EOF'
import json, sys
name, w, r = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def ms(us): return f"{us / 1000:.1f} ms"
print(f"| {name} | writes only | {w['writes']['per_sec']:,.0f} | – | "
      f"{ms(w['writes']['latency_us']['p50'])} / {ms(w['writes']['latency_us']['p99'])} | – | "
      f"{w['writes']['errors']} |")
print(f"| {name} | 90% reads | {r['writes']['per_sec']:,.0f} | {r['reads']['per_sec']:,.0f} | "
      f"{ms(r['writes']['latency_us']['p50'])} / {ms(r['writes']['latency_us']['p99'])} | "
      f"{ms(r['reads']['latency_us']['p50'])} / {ms(r['reads']['latency_us']['p99'])} | "
      f"{r['writes']['errors'] + r['reads']['errors']} |")
EOF
}

echo "| cluster | load | writes/s | reads/s | write p50 / p99 | read p50 / p99 | errors |"
echo "|---|---|---|---|---|---|---|"

if [ "$only" != consensus ]; then
  initial=""
  for i in 1 2 3; do initial+="e$i=http://127.0.0.1:2238$i,"; done
  initial="${initial%,}"
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd$i" \
      --listen-client-urls "http://127.0.0.1:2237$i" --advertise-client-urls "http://127.0.0.1:2237$i" \
      --listen-peer-urls "http://127.0.0.1:2238$i" --initial-advertise-peer-urls "http://127.0.0.1:2238$i" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token compare \
      --log-level error >"$work/etcd$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 1 2 3; do wait_http "http://127.0.0.1:2237$i/health"; done
  measure "etcd $(etcd --version | head -1 | awk '{print $3}')" etcd \
    "http://127.0.0.1:22371,http://127.0.0.1:22372,http://127.0.0.1:22373"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
fi

if [ "$only" != etcd ]; then
  head -c 32 /dev/urandom | base64 >"$work/cluster.key"
  peers=""
  for i in 1 2 3; do peers+="$i=127.0.0.1:2247$i/127.0.0.1:2257$i,"; done
  peers="${peers%,}"
  for i in 1 2 3; do
    "$bin" node --id "$i" --listen "127.0.0.1:2247$i" --http "127.0.0.1:2257$i" \
      --peers "$peers" --data-dir "$work/node$i" --cluster-key-file "$work/cluster.key" \
      >"$work/node$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 1 2 3; do wait_http "http://127.0.0.1:2257$i/status"; done
  for _ in $(seq 1 300); do
    if curl -fsS -m 1 http://127.0.0.1:22571/status | grep -q '"leader":[0-9]'; then break; fi
    sleep 0.1
  done
  measure "consensus node (raft)" consensus \
    "http://127.0.0.1:22571,http://127.0.0.1:22572,http://127.0.0.1:22573"
fi
