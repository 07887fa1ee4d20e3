#!/usr/bin/env bash
# Checkouts on each backend and with replicas, measured by `bazaar load`, side by side.
#
# Each row starts Bazaar afresh (release build, its own data directory, as `up` runs it: mTLS
# and tracing on), places orders from USERS customers in a closed loop for DURATION with
# bench/scenarios/checkout.toml, and reads the load report's JSON:
#
#   sqlite                the embedded defaults
#   sqlite, orders x2     two orders instances sharing the SQLite file
#   postgres+nats         a database per service on PostgreSQL, events through NATS JetStream
#   postgres+nats, x2     the same with two instances of orders, catalog, payments and shipping
#   production profile    `up --profile production`: PostgreSQL, NATS, Redis for carts and
#                         rate limits, two instances of every service but the registry and the
#                         trace store (issue 13's rehearsal)
#
# The PostgreSQL databases (bench_<pid>_<n>_<service>) are dropped after each row; the NATS
# streams have a prefix of their own (bench_<pid>_<n>) and are left to JetStream's limits.
#
# Needs psql, a PostgreSQL server at $PG (trust auth) and NATS JetStream at $NATS for the last
# two rows; SKIP_SERVERS=1 runs the SQLite rows only.
#
#   bench/backends.sh                       # 30 s per row, 32 customers
#   ROWS="sqlite,production profile" bench/backends.sh   # only these rows
#   USERS=64 DURATION=60s bench/backends.sh
#   BAZAAR=/tmp/bazaar-old bench/backends.sh
set -euo pipefail

DURATION="${DURATION:-30s}"
USERS="${USERS:-32}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
NATS="${NATS:-nats://127.0.0.1:4222}"
SKIP_SERVERS="${SKIP_SERVERS:-0}"
ROWS="${ROWS:-}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. bench/common.sh
need bench/backends.sh "python3" python3
bazaar="$(bazaar_binary)"

work="$(mktemp -d)"
up_pid=""
databases=""
stop_up() {
    if [ -n "$up_pid" ]; then
        kill -INT "$up_pid" 2>/dev/null || true
        wait "$up_pid" 2>/dev/null || true
        up_pid=""
    fi
    if [ -n "$databases" ]; then
        for db in $(psql "$PG/postgres" -Atc "SELECT datname FROM pg_database WHERE datname LIKE '${databases}_%'"); do
            psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
        done
        databases=""
    fi
}
trap 'stop_up; rm -rf "$work"' EXIT

n=0
# row NAME UP-ARGS...: one configuration, one line of results in $work/rows.
row() {
    local name="$1"
    shift
    n=$((n + 1))
    if [ -n "$ROWS" ] && [[ ",$ROWS," != *",$name,"* ]]; then
        return
    fi
    local data="$work/data-$n"
    start_up "$work/up-$n.log" --data-dir "$data" --base-port 0 "$@"
    up_pid=$started_pid
    "$bazaar" load --data-dir "$data" --users "$USERS" --duration "$DURATION" \
        --scenario bench/scenarios/checkout.toml --every 10s --json "$work/load-$n.json" \
        >"$work/load-$n.txt"
    stop_up
    echo "$name|$work/load-$n.json" >>"$work/rows"
    echo "$name: done" >&2
}

row "sqlite"
row "sqlite, orders x2" --replicas orders=2
if [ "$SKIP_SERVERS" != 1 ]; then
    need bench/backends.sh "postgresql-client" psql
    databases="bench_$$_3"
    export BAZAAR_EVENTS__NATS_PREFIX="$databases"
    row "postgres+nats" --db "$PG/$databases" --bus "$NATS"
    databases="bench_$$_4"
    export BAZAAR_EVENTS__NATS_PREFIX="$databases"
    row "postgres+nats, x2" --db "$PG/$databases" --bus "$NATS" \
        --replicas orders=2 --replicas catalog=2 --replicas payments=2 --replicas shipping=2
    databases="bench_$$_5"
    export BAZAAR_EVENTS__NATS_PREFIX="$databases"
    export BAZAAR_CART__REDIS_PREFIX="$databases:cart:" BAZAAR_GATEWAY__RATELIMIT_PREFIX="$databases:ratelimit:"
    row "production profile" --profile production --db "$PG/$databases" --bus "$NATS"
fi

echo "Bazaar $("$bazaar" --version | awk '{print $2}'), $(nproc) cores, $USERS customers, $DURATION per row"
echo
python3 - "$work/rows" <<'PY'
import json, sys
lag = "CONFIRMED → confirmation email stored (event lag)"
print("| system | confirmed/s | placed → CONFIRMED p50 / p99 ms | event lag p50 / p99 ms | errors | CPU ms per checkout |")
print("|---|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    name, path = line.rstrip("\n").split("|")
    r = json.load(open(path))
    c = r["order_to_confirmed_ms"] or {}
    parts = {p["part"]: p["ms"] for p in r["checkout_breakdown"]}
    l = parts.get(lag)
    errors = sum(r["errors"].values())
    cpu = sum(u["ms_per_journey"] for u in r["cpu"] if u["service"] != "bazaar load (this process)")
    print(f"| {name} | {r['confirmed'] / r['seconds']:.1f} | {c.get('p50', 0):.0f} / {c.get('p99', 0):.0f} | "
          + (f"{l['p50']:.1f} / {l['p99']:.1f}" if l else "–")
          + f" | {errors} | {cpu:.1f} |")
PY
