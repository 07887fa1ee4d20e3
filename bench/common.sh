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
