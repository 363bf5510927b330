#!/usr/bin/env bash
# Side by side: Porcupine (the Go linearizability checker most users know)
# and `consensus check-history` on the same history files. Prints a markdown
# table: per file (or group of files), each checker's verdict, check time
# and peak RSS.
#
#   PORCUPINE_DIR=/path/to/porcupine scripts/porcupine_compare.sh [FILE.json ...]
#
# Porcupine is no dependency of this project. Get a checkout with
#   git clone https://github.com/anishathalye/porcupine
# and Go (Debian: apt-get install golang-go). Without either the script
# prints why and exits 0 (skipped).
#
# Always compared: the 103 Jepsen etcd logs of ../shared/testdata/jepsen-etcd
# (one row, summed) and the unknown-outcome shapes of scripts/unknown_shapes.py.
# Then every FILE given (e.g. simulate --history outputs, their shuffled or
# repeated copies from scripts/history_tools.py).
#
# Environment: CONSENSUS (the binary; default: build target/release/consensus),
# PORCUPINE_TIMEOUT (default 60s), PORCUPINE_MEM_KB (address-space limit of
# each Porcupine run, default 6000000: beyond it Porcupine dies "out of
# memory" instead of taking the machine), JEPSEN_DIR (default
# ../shared/testdata/jepsen-etcd).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${PORCUPINE_DIR:-}" ] || [ ! -f "${PORCUPINE_DIR}/go.mod" ]; then
  echo "porcupine_compare: SKIPPED: set PORCUPINE_DIR to a Porcupine checkout" \
    "(git clone https://github.com/anishathalye/porcupine)" >&2
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "porcupine_compare: SKIPPED: no go on PATH (Debian: apt-get install golang-go)" >&2
  exit 0
fi
porcupine_dir="$(cd "$PORCUPINE_DIR" && pwd)"
timeout_go="${PORCUPINE_TIMEOUT:-60s}"
mem_kb="${PORCUPINE_MEM_KB:-6000000}"
jepsen_dir="${JEPSEN_DIR:-$root/../shared/testdata/jepsen-etcd}"

work="$(mktemp -d "${TMPDIR:-/tmp}/porcupine-compare.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The adapter: its own module, Porcupine replaced by the checkout (no
# network: Porcupine has no dependencies).
mkdir -p "$work/adapter"
cp "$root/scripts/porcupine/main.go" "$work/adapter/"
cat > "$work/adapter/go.mod" <<MOD
module porcupine-adapter

go 1.16

require github.com/anishathalye/porcupine v0.0.0

replace github.com/anishathalye/porcupine => $porcupine_dir
MOD
(cd "$work/adapter" && GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local go build -o "$work/porcupine-adapter" .)

if [ -n "${CONSENSUS:-}" ]; then
  bin="$CONSENSUS"
else
  (cd "$root" && cargo build --release -q -p consensus-engine --bin consensus)
  bin="$root/target/release/consensus"
fi

# ours FILE [FORMAT] -> "VERDICT CHECK_MS PEAK_KB"
ours() {
  local out
  out="$( { /usr/bin/time -f "%M" "$bin" check-history --format "${2:-json}" --json "$1" 2>"$work/time" || true; } | tail -1)"
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
v = r.get("verdict", "?").replace("_", "-")
print(v, "%.1f" % r["elapsed_ms"] if "elapsed_ms" in r else "?", sys.argv[2])
' "$out" "$(tail -1 "$work/time")"
}

# theirs FILE [-jepsen] -> "VERDICT CHECK_MS PEAK_KB" (out-of-memory / crashed)
theirs() {
  local out rc=0
  out="$( (ulimit -v "$mem_kb"; /usr/bin/time -f "%M" "$work/porcupine-adapter" -timeout "$timeout_go" ${2:-} "$1") 2>"$work/ptime")" || rc=$?
  if [ "$rc" -ne 0 ]; then
    if grep -q "out of memory\|cannot allocate" "$work/ptime"; then
      echo "out-of-memory - $(tail -1 "$work/ptime" | tr -dc 0-9)"
    else
      echo "crashed($rc) - -"
    fi
    return
  fi
  # Porcupine's "unknown" is its timeout.
  echo "$(echo "$out" | cut -d' ' -f1-2 | sed "s/^unknown /timeout($timeout_go) /") $(tail -1 "$work/ptime")"
}

echo "| history | ops | ours: verdict, check, peak RSS | Porcupine: verdict, check, peak RSS |"
echo "|---|---|---|---|"

# The Jepsen logs: one row, times summed, verdicts counted, agreement checked.
if [ -d "$jepsen_dir" ]; then
  agree=0; total=0; ours_ms=0; theirs_ms=0; ours_kb=0; theirs_kb=0; lin=0; not=0
  for f in "$jepsen_dir"/*.log; do
    read -r ov oms okb <<<"$(ours "$f" jepsen)"
    read -r tv tms tkb <<<"$(theirs "$f" -jepsen)"
    total=$((total + 1))
    [ "$ov" = "$tv" ] && agree=$((agree + 1))
    [ "$ov" = linearizable ] && lin=$((lin + 1))
    [ "$ov" = not-linearizable ] && not=$((not + 1))
    ours_ms="$(python3 -c "print($ours_ms + float('$oms'))")"
    theirs_ms="$(python3 -c "print($theirs_ms + (float('$tms') if '$tms' != '-' else 0))")"
    [ "$okb" -gt "$ours_kb" ] && ours_kb="$okb"
    [ "${tkb:-0}" -gt "$theirs_kb" ] 2>/dev/null && theirs_kb="$tkb"
  done
  printf '| %d Jepsen etcd logs (sum of check times; largest peak) | - | %d linearizable, %d not; %.1f ms; %d MB | agrees on %d/%d; %.1f ms; %d MB |\n' \
    "$total" "$lin" "$not" "$ours_ms" $((ours_kb / 1024)) "$agree" "$total" "$theirs_ms" $((theirs_kb / 1024))
fi

row() {
  local name="$1" file="$2" ops
  ops="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["operations"]))' "$file" 2>/dev/null || echo "?")"
  read -r ov oms okb <<<"$(ours "$file")"
  read -r tv tms tkb <<<"$(theirs "$file")"
  printf '| %s | %s | %s, %s ms, %s MB | %s, %s ms, %s MB |\n' "$name" "$ops" "$ov" "$oms" \
    "$((okb / 1024))" "$tv" "$tms" "$([ "$tkb" = - ] && echo - || echo $((tkb / 1024)))"
}

python3 "$root/scripts/unknown_shapes.py" "$work/shapes" >/dev/null
for f in "$work"/shapes/*.json; do
  row "$(basename "$f" .json)" "$f"
done
for f in "$@"; do
  row "$(basename "$f")" "$f"
done
