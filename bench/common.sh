# What the bench scripts share; sourced, not run.

# need SCRIPT PACKAGES TOOL...: exits with a message naming the first tool missing.
need() {
    local script="$1" packages="$2"
    shift 2
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "$script needs $tool (Debian: apt-get install $packages)" >&2
            exit 2
        }
    done
}

# bazaar_binary: the `bazaar` to measure, on stdout: $BAZAAR if set, else a fresh release
# build of this checkout.
bazaar_binary() {
    if [ -n "${BAZAAR:-}" ]; then
        echo "$BAZAAR"
        return
    fi
    cargo build --release --quiet -p bazaar
    local target_dir
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    echo "$target_dir/release/bazaar"
}

# Milliseconds from a wrk latency such as 812.00us, 1.20ms or 1.01s.
to_ms() {
    case "$1" in
        *us) python3 -c "print(round(${1%us} / 1000, 3))" ;;
        *ms) python3 -c "print(round(${1%ms}, 3))" ;;
        *s) python3 -c "print(round(${1%s} * 1000, 3))" ;;
        *) echo "?" ;;
    esac
}

# run NAME URL CONNECTIONS [HEADER] -> "req/s p50 p99 errors": wrk for $WARMUP (not counted),
# then for $DURATION.
run() {
    local url="$2" connections="$3" header="${4:-x-bench: 1}"
    local threads=$((connections < 2 ? 1 : 2))
    wrk -t"$threads" -c"$connections" -d"$WARMUP" -H "$header" "$url" >/dev/null
    local out
    out="$(wrk -t"$threads" -c"$connections" -d"$DURATION" --latency -H "$header" "$url")"
    local rps p50 p99 errors
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    errors="$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")"
    echo "$rps $p50 $p99 ${errors:-0}"
}

# start_up LOG ARGS...: starts `$bazaar up ARGS...` in the background, logging to LOG, and
# waits until it is up; its pid is in $started_pid.
start_up() {
    local log="$1"
    shift
    BAZAAR_LOG__LEVEL=warn "$bazaar" up "$@" >"$log" 2>&1 </dev/null &
    started_pid=$!
    for _ in $(seq 1 600); do
        grep -q "Press Ctrl-C to stop" "$log" && return 0
        kill -0 "$started_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    cat "$log" >&2
    exit 1
}
