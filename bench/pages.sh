#!/usr/bin/env bash
# The storefront's and the console's pages: how much HTML each sends (before images) and how
# long it takes to its first byte, through the gateway, as a browser would fetch them.
#
# Starts Bazaar afresh (release build, its own data directory, embedded defaults), signs in as
# the demo customer with the storefront's own form, checks out one mug with the test card and
# waits for it to be confirmed, puts another in the cart, then fetches each page REQUESTS times
# with curl (the first fetch of each is a warm-up, not counted) and prints a table: the page's
# size, and the median and p90 of curl's time_starttransfer.
#
# Needs curl and python3.
#
#   bench/pages.sh
#   REQUESTS=51 bench/pages.sh
#   BAZAAR=/tmp/bazaar-old bench/pages.sh   # a build kept from before
set -euo pipefail

REQUESTS="${REQUESTS:-21}"
BASE_PORT="${BASE_PORT:-28100}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. bench/common.sh
need bench/pages.sh "curl python3" curl python3
bazaar="$(bazaar_binary)"

work="$(mktemp -d)"
started_pid=""
trap '[ -n "$started_pid" ] && { kill -INT "$started_pid" 2>/dev/null; wait "$started_pid" 2>/dev/null; }; rm -rf "$work"' EXIT

start_up "$work/up.log" --data-dir "$work/data" --base-port "$BASE_PORT"
shop="http://127.0.0.1:$BASE_PORT"
customer=(-b "$work/customer" -c "$work/customer")
admin=(-b "$work/admin" -c "$work/admin")

# form JAR PATH FIELDS... -> where the storefront sent the browser (its Location header).
form() {
    local -n jar=$1
    local path="$2"
    shift 2
    local args=()
    for field in "$@"; do args+=(--data-urlencode "$field"); done
    curl -fsS -o /dev/null -w '%{redirect_url}' "${jar[@]}" "${args[@]}" "$shop$path"
}

form customer /login email=demo@bazaar.example password=shop-till-you-drop >/dev/null
form admin /login email=admin@bazaar.example password=keys-to-the-shop next=/console >/dev/null
form customer /cart/items sku=MUG-STONE quantity=1 >/dev/null
key="$(curl -fsS "${customer[@]}" "$shop/checkout" | sed -n 's/.*name="key" value="\([^"]*\)".*/\1/p' | head -1)"
[ -n "$key" ] || { echo "bench/pages.sh: the checkout form has no key" >&2; exit 1; }
order="$(form customer /checkout name=Bench line1="1 Load St" city=London postal_code="N1 9GU" \
    country=GB card_number=4242424242424242 exp=12/35 cvc=123 key="$key")"
order="${order#"$shop"}"
case "$order" in
    /orders/*) ;;
    *) echo "bench/pages.sh: the checkout went to ${order:-nowhere}, not to an order" >&2; exit 1 ;;
esac
# The order's page once it is confirmed: the page's status endpoint waits for the checkout.
status="$(curl -fsS "${customer[@]}" "$shop$order/status")"
case "$status" in
    *'"status":"CONFIRMED"'*) ;;
    *) echo "bench/pages.sh: the order is not confirmed: $status" >&2; exit 1 ;;
esac
form customer /cart/items sku=MUG-STONE quantity=1 >/dev/null

# measure LABEL JAR PATH -> "LABEL|bytes|median ms|p90 ms"
measure() {
    local label="$1" path="$3"
    local -n jar=$2
    local samples="$work/samples"
    : >"$samples"
    for i in $(seq 0 "$REQUESTS"); do
        local out
        out="$(curl -fsS -o /dev/null -w '%{http_code} %{size_download} %{time_starttransfer}' "${jar[@]}" "$shop$path")"
        case "$out" in
            200\ *) ;;
            *) echo "bench/pages.sh: $path answered ${out%% *}, not 200" >&2; exit 1 ;;
        esac
        [ "$i" -gt 0 ] && echo "$out" >>"$samples"
    done
    python3 - "$label" "$samples" <<'PY'
import statistics, sys
label, rows = sys.argv[1], [line.split() for line in open(sys.argv[2])]
times = sorted(float(r[2]) * 1000 for r in rows)
p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
print(f"{label}|{float(rows[-1][1]) / 1000:.1f} KB|{statistics.median(times):.1f} ms|{p90:.1f} ms")
PY
}

nobody=()
{
    measure "home (\`/\`)" nobody /
    measure "category (\`/c/kitchen\`)" nobody /c/kitchen
    measure "search (\`/search?q=mug\`)" nobody "/search?q=mug"
    measure "product (\`/p/MUG-STONE\`)" nobody /p/MUG-STONE
    measure "log in" nobody /login
    measure "cart, signed in" customer /cart
    measure "checkout form" customer /checkout
    measure "an order, confirmed" customer "$order"
    measure "orders" customer /orders
    measure "emails" customer /emails
    measure "operations console (\`/console\`)" admin /console
    measure "stylesheet" nobody /static/app.css
    measure "script" nobody /static/app.js
    measure "a picture" nobody /images/MUG-STONE.svg
} >"$work/table"

echo "Bazaar $("$bazaar" --version | awk '{print $2}'), $(nproc) cores, $REQUESTS requests per page after one not counted"
echo
echo "| page | size | TTFB median | TTFB p90 |"
echo "|---|---:|---:|---:|"
awk -F'|' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }' "$work/table"
