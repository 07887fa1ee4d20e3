#!/usr/bin/env bash
# Checkout throughput with tracing off and on, or with mTLS between services on and off, side
# by side (COMPARE=tracing, the default, or COMPARE=mtls).
#
# Each round starts Bazaar afresh (release build, its own data directory), once with tracing
# off (OTEL_SDK_DISABLED=true) and once with every trace recorded and sent to the telemetry
# service (the default of `up`), then places orders through the gateway with wrk for DURATION
# at CONNECTIONS, each order a whole checkout: reserve, charge, ship, confirm, the events and
# the emails. With COMPARE=mtls, tracing is off in both and the `off` setting runs
# `up --no-mtls`. It reports orders accepted per second (wrk) and checkouts confirmed per second
# (bazaar_orders_sagas_finished_total, counted until the last checkout finished), as medians
# over ROUNDS rounds.
#
# Needs wrk, curl and python3. Everything shares this machine's cores.
#
#   bench/checkout.sh                        # 2 rounds of 20 s per setting
#   ROUNDS=3 DURATION=30s CONNECTIONS=32 bench/checkout.sh
#   COMPARE=mtls bench/checkout.sh           # what mutual TLS between services costs
#   BAZAAR=/tmp/bazaar-old bench/checkout.sh # a build kept from before
set -euo pipefail

DURATION="${DURATION:-20s}"
CONNECTIONS="${CONNECTIONS:-16}"
ROUNDS="${ROUNDS:-2}"
COMPARE="${COMPARE:-tracing}"
case "$COMPARE" in
    tracing | mtls) ;;
    *) echo "COMPARE=$COMPARE: expected tracing or mtls" >&2; exit 2 ;;
esac
BASE_PORT="${BASE_PORT:-27900}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. bench/common.sh
need bench/checkout.sh "wrk curl python3" wrk curl python3
bazaar="$(bazaar_binary)"

work="$(mktemp -d)"
up_pid=""
stop_up() {
    if [ -n "$up_pid" ]; then
        kill -INT "$up_pid" 2>/dev/null || true
        wait "$up_pid" 2>/dev/null || true
        up_pid=""
    fi
}
trap 'stop_up; rm -rf "$work"' EXIT

gateway="http://127.0.0.1:$BASE_PORT"
orders_port=$((BASE_PORT + 13))
# The orders service's metrics: over mTLS as the operator, when the services talk mTLS.
orders_curl=()

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

# Checkouts finished with `status` so far, from the orders service's metrics.
finished() {
    curl -fsS "${orders_curl[@]}" | awk -v s="$1" '
        $1 ~ /^bazaar_orders_sagas_finished_total\{/ && $1 ~ "status=\"" s "\"" { n += $2 }
        END { print n + 0 }'
}

# round SETTING -> "SETTING accepted/s confirmed/s cancelled non-2xx"; SETTING is whether the
# compared feature (tracing or mTLS) is on or off.
round() {
    local setting="$1" data="$work/data-$1-$RANDOM"
    local tracing=off mtls=on
    if [ "$COMPARE" = tracing ]; then tracing="$setting"; else mtls="$setting"; fi
    if [ "$mtls" = on ]; then
        orders_curl=(--cacert "$data/pki/ca.pem" --cert "$data/pki/operator.pem"
            --key "$data/pki/operator.key" "https://localhost:$orders_port/metrics")
    else
        orders_curl=("http://127.0.0.1:$orders_port/metrics")
    fi
    (
        [ "$tracing" = off ] && export OTEL_SDK_DISABLED=true
        flags=()
        [ "$mtls" = off ] && flags=(--no-mtls)
        BAZAAR_LOG__LEVEL=warn exec "$bazaar" up --data-dir "$data" --base-port "$BASE_PORT" \
            "${flags[@]}" >"$work/up.log" 2>&1 </dev/null
    ) &
    up_pid=$!
    for _ in $(seq 1 600); do
        grep -q "Press Ctrl-C to stop" "$work/up.log" && break
        kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log" >&2; exit 1; }
        sleep 0.1
    done
    local login='{"email":"admin@bazaar.example","password":"keys-to-the-shop"}'
    local token
    token="$(curl -fsS -X POST "$gateway/api/auth/login" -H 'content-type: application/json' -d "$login" | json_field access_token)"
    # A product that never runs out, so every checkout can confirm.
    curl -fsS -o /dev/null -X POST "$gateway/api/products" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d '{"sku":"BENCH-MUG","name":"Bench Mug","price":{"amount_minor":1500,"currency":"USD"},"category":"kitchen","stock":1000000}'
    local card
    card="$(curl -fsS -X POST "$gateway/api/payment-methods" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d '{"card_number":"4242424242424242","exp_month":12,"exp_year":2035,"cvc":"123"}' | json_field id)"
    cat >"$work/order.lua" <<EOF
local n = 0
local thread_tag = tostring(math.random(1, 1000000000))
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $token"
wrk.body = '{"items":[{"sku":"BENCH-MUG","quantity":1}],"shipping_address":{"name":"Bench","line1":"1 Load St","city":"London","postal_code":"N1 9GU","country":"GB"},"payment_method":"$card"}'
request = function()
    n = n + 1
    wrk.headers["idempotency-key"] = "bench-" .. thread_tag .. "-" .. n
    return wrk.format()
end
EOF
    local before
    before="$(finished confirmed)"
    local started out
    started="$(date +%s.%N)"
    out="$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$work/order.lua" "$gateway/api/orders")"
    local accepted non2xx
    accepted="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    non2xx="$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")"
    # Wait until the last checkout has finished: nothing running for two looks in a row.
    local quiet=0 last=-1 now
    for _ in $(seq 1 600); do
        now="$(finished confirmed)"
        if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        [ "$quiet" -ge 2 ] && break
        last="$now"
        sleep 0.5
    done
    local ended confirmed cancelled
    ended="$(date +%s.%N)"
    confirmed="$(finished confirmed)"
    cancelled="$(finished cancelled)"
    stop_up
    python3 -c "print(f'$setting {$accepted:.1f} {($confirmed - $before) / ($ended - $started):.1f} {int($cancelled)} ${non2xx:-0}')"
}

results="$work/results"
for r in $(seq 1 "$ROUNDS"); do
    for setting in off on; do
        round "$setting" >>"$results"
    done
done

echo "Bazaar $("$bazaar" --version | awk '{print $2}'), $(nproc) cores, $CONNECTIONS connections, $DURATION per run, median of $ROUNDS rounds"
echo
python3 - "$results" "$COMPARE" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
compare = sys.argv[2]
print(f"| {compare} | orders accepted/s | checkouts confirmed/s | cancelled | non-2xx |")
print("|---|---:|---:|---:|---:|")
medians = {}
for setting in ("off", "on"):
    runs = [r for r in rows if r[0] == setting]
    accepted = statistics.median(float(r[1]) for r in runs)
    confirmed = statistics.median(float(r[2]) for r in runs)
    medians[setting] = confirmed
    label = "on (every trace recorded)" if compare == "tracing" and setting == "on" else setting
    print(f"| {label} |", end="")
    print(f" {accepted:.1f} | {confirmed:.1f} | {sum(int(r[3]) for r in runs)} | {sum(int(r[4]) for r in runs)} |")
if medians["off"] > 0:
    name = "Tracing" if compare == "tracing" else "mTLS between services"
    print(f"\n{name} costs {100 * (1 - medians['on'] / medians['off']):.1f} % of checkout throughput.")
PY
