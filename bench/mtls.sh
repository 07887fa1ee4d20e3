#!/usr/bin/env bash
# What mutual TLS between services costs on an internal call, side by side.
#
# Starts two Bazaars from one release build, on two sets of ports: one as `up` runs it (every
# service behind mTLS; the gateway presents its certificate to the catalog), one with
# `up --no-mtls` (plain HTTP between services). Then drives GET /api/categories through each
# gateway (one internal call, gateway → catalog) with wrk at 1 and 64 connections, the two in
# turn in every round. Tracing and access logs are off in both. Prints a Markdown table of
# medians: requests per second, p50/p99, and what mTLS adds to the p50.
#
# Needs wrk (Debian: apt-get install wrk).
#
#   bench/mtls.sh                          # 3 rounds of 10 s per cell
#   ROUNDS=5 DURATION=30s bench/mtls.sh
set -euo pipefail

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-1 64}"
BASE_PORT="${BASE_PORT:-27600}"
PLAIN_PORT="${PLAIN_PORT:-27500}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. bench/common.sh
need bench/mtls.sh "wrk curl python3" wrk curl python3
bazaar="$(bazaar_binary)"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

export OTEL_SDK_DISABLED=true
start_up "$work/mtls.log" --data-dir "$work/mtls" --base-port "$BASE_PORT"
pids+=("$started_pid")
start_up "$work/plain.log" --data-dir "$work/plain" --base-port "$PLAIN_PORT" --no-mtls
pids+=("$started_pid")

targets() {
    echo "mtls http://127.0.0.1:$BASE_PORT/api/categories"
    echo "plain http://127.0.0.1:$PLAIN_PORT/api/categories"
}
while read -r name url; do
    curl -fsS -o /dev/null "$url" || { echo "$name: $url does not answer" >&2; exit 1; }
done <<<"$(targets)"

results="$work/results"
for round in $(seq 1 "$ROUNDS"); do
    for c in $CONNECTIONS; do
        while read -r name url; do
            echo "$name $c $(run "$name" "$url" "$c")" >>"$results"
        done <<<"$(targets)"
    done
done

echo "Bazaar $("$bazaar" --version | awk '{print $2}'), $(nproc) cores, $DURATION per cell, median of $ROUNDS rounds, GET /api/categories through the gateway (one internal call)"
echo
python3 - "$results" "$CONNECTIONS" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("| services talk | connections | req/s | p50 ms | p99 ms | p50 added by mTLS | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for c in sys.argv[2].split():
    cell = {}
    for name in ("plain", "mtls"):
        runs = [r for r in rows if r[0] == name and r[1] == c]
        med = lambda i: statistics.median(float(r[i]) for r in runs)
        cell[name] = (med(2), med(3), med(4), sum(int(r[5]) for r in runs))
    for name, label in (("plain", "plain HTTP (`--no-mtls`)"), ("mtls", "mutual TLS (default)")):
        rps, p50, p99, errors = cell[name]
        added = "–" if name == "plain" else f"{1000 * (p50 - cell['plain'][1]):.0f} µs"
        print(f"| {label} | {c} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {added} | {errors} |")
PY
