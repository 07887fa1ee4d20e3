#!/usr/bin/env bash
# The gateway against nginx and against calling the service directly.
#
# Starts Bazaar (release build) and an nginx that proxies the same upstream, then drives each
# with wrk at 1 and 64 connections:
#
#   direct        GET catalog /categories, no proxy
#   nginx         GET /api/categories through nginx (HTTP/1.1 keep-alive to the upstream)
#   gateway       GET /api/categories through the gateway (public route)
#   gateway+auth  GET /api/bench/categories through the gateway: token verified, rate limited
#
# Services talk plain HTTP to each other here (`up --no-mtls`): wrk and nginx call the catalog
# directly and present no client certificate. bench/mtls.sh measures what mTLS adds.
#
# Access logs are off on both proxies (BAZAAR_LOG__LEVEL=warn, nginx `access_log off`), and
# so is tracing (OTEL_SDK_DISABLED=true; TRACING=on keeps it, to measure what it costs), so
# the numbers compare proxying, not log writing or span export. Prints a Markdown table of medians over the
# rounds; "added p50" is the median latency over the direct call at the same number of
# connections.
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light). Everything shares this
# machine's cores, so compare rows of one run, not runs on different machines.
#
#   bench/gateway.sh                          # 3 rounds of 10 s per cell
#   ROUNDS=5 DURATION=30s bench/gateway.sh    # more, longer
#   BAZAAR=/tmp/bazaar-old bench/gateway.sh   # a build kept from before, not this checkout
set -euo pipefail

DURATION="${DURATION:-10s}"
BASE_PORT="${BASE_PORT:-27700}"
NGINX_PORT="${NGINX_PORT:-27780}"
CONNECTIONS="${CONNECTIONS:-1 64}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-3}"
TRACING="${TRACING:-off}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. bench/common.sh
need bench/gateway.sh "wrk nginx-light curl python3" wrk nginx curl python3
bazaar="$(bazaar_binary)"

work="$(mktemp -d)"
up_pid=""
cleanup() {
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    if [ -n "$up_pid" ]; then
        kill -INT "$up_pid" 2>/dev/null || true
        wait "$up_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# An authenticated, rate-limited route to the same upstream, with a limit the load never hits:
# the cost of checking is measured, not the cost of refusing.
cat >"$work/bench.toml" <<'EOF'
[[gateway.extra_routes]]
prefix = "/api/bench/categories"
service = "catalog"
rewrite = "/categories"
auth = "required"
rate_limit = { requests = 100000000, per = "1s", burst = 100000000 }
EOF

case "$TRACING" in
    off) export OTEL_SDK_DISABLED=true ;;
    on) ;;
    *) echo "TRACING=$TRACING: expected on or off" >&2; exit 2 ;;
esac
BAZAAR_LOG__LEVEL=warn "$bazaar" up --data-dir "$work/data" --base-port "$BASE_PORT" \
    --config "$work/bench.toml" --no-mtls >"$work/up.log" 2>&1 </dev/null &
up_pid=$!
for _ in $(seq 1 600); do
    grep -q "Press Ctrl-C to stop" "$work/up.log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log" >&2; exit 1; }
    sleep 0.1
done
grep -q "Press Ctrl-C to stop" "$work/up.log" || { cat "$work/up.log" >&2; exit 1; }

gateway="http://127.0.0.1:$BASE_PORT"
catalog="http://127.0.0.1:$((BASE_PORT + 12))"
token="$(curl -fsS -X POST "$gateway/api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"demo@bazaar.example","password":"shop-till-you-drop"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    upstream catalog {
        server 127.0.0.1:$((BASE_PORT + 12));
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /api/categories {
            proxy_pass http://catalog/categories;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
nginx -c "$work/nginx.conf" -p "$work/nginx"
for _ in $(seq 1 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/api/categories" 2>/dev/null && break
    sleep 0.1
done

# Same answer through every path, or the comparison means nothing.
expected="$(curl -fsS "$catalog/categories")"
for url in "http://127.0.0.1:$NGINX_PORT/api/categories" "$gateway/api/categories"; do
    [ "$(curl -fsS "$url")" = "$expected" ] || { echo "$url answers differently" >&2; exit 1; }
done
[ "$(curl -fsS -H "authorization: Bearer $token" "$gateway/api/bench/categories")" = "$expected" ] ||
    { echo "the authenticated route answers differently" >&2; exit 1; }

targets() {
    echo "direct $catalog/categories x-bench: 1"
    echo "nginx http://127.0.0.1:$NGINX_PORT/api/categories x-bench: 1"
    echo "gateway $gateway/api/categories x-bench: 1"
    echo "gateway+auth $gateway/api/bench/categories authorization: Bearer $token"
}

# Every round runs each target once, in turn, so a slow spell of the machine hits all of them;
# each cell of the table is the median of its rounds.
results="$work/results"
for round in $(seq 1 "$ROUNDS"); do
    for c in $CONNECTIONS; do
        while read -r name url header; do
            echo "$name $c $(run "$name" "$url" "$c" "$header")" >>"$results"
        done <<<"$(targets)"
    done
done

echo "Bazaar $("$bazaar" --version | awk '{print $2}'), nginx $(nginx -v 2>&1 | sed 's|.*/||'), $(nproc) cores, $DURATION per cell, median of $ROUNDS rounds, tracing $TRACING"
echo
python3 - "$results" "$CONNECTIONS" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
order = ["direct", "nginx", "gateway", "gateway+auth"]
print("| target | connections | req/s | p50 ms | p99 ms | added p50 ms | % of nginx req/s | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for c in sys.argv[2].split():
    cell = {}
    for name in order:
        runs = [r for r in rows if r[0] == name and r[1] == c]
        med = lambda i: statistics.median(float(r[i]) for r in runs)
        cell[name] = (med(2), med(3), med(4), sum(int(r[5]) for r in runs))
    for name in order:
        rps, p50, p99, errors = cell[name]
        added = "–" if name == "direct" else f"{p50 - cell['direct'][1]:.3f}"
        share = "–" if name in ("direct", "nginx") else f"{100 * rps / cell['nginx'][0]:.0f} %"
        print(f"| {name} | {c} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {added} | {share} | {errors} |")
PY
