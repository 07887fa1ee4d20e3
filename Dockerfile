# syntax=docker/dockerfile:1.7
#
# One image for every Bazaar service: the `bazaar` binary, run as `bazaar serve <service>`.
#
#   docker build -t bazaar:0.1.0 .
#   docker run --rm -p 8080:8080 bazaar:0.1.0 catalog --registry ""
#
# Inside the image every service listens on 0.0.0.0:8080 (http.port) and serves health and
# metrics without a certificate on 9090 (http.admin_port), keeps its data under
# /var/lib/bazaar, and logs JSON to standard output. Everything else is configuration:
# BAZAAR_* variables, or a TOML file passed with --config (README, "Configuration").
# deploy/compose and deploy/kubernetes run it; docs/operations.md describes both.

ARG RUST_VERSION=1.95

# ---- build: the release binary, without debug info and stripped (about 41 MB) ----
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory are cache mounts: a rebuild after a code change
# compiles the workspace's crates, not its 400 dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p bazaar \
    && install -D target/release/bazaar /out/usr/local/bin/bazaar \
    && install -d -o 65532 -g 65532 /out/var/lib/bazaar

# ---- runtime: glibc and CA certificates, no shell, no package manager ----
# The binary links only libc, libm and libgcc_s (TLS is rustls; SQLite is built in).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
ENV BAZAAR_HTTP__HOST=0.0.0.0 \
    BAZAAR_HTTP__PORT=8080 \
    BAZAAR_HTTP__ADMIN_PORT=9090 \
    BAZAAR_DATA_DIR=/var/lib/bazaar \
    BAZAAR_LOG__FORMAT=json
VOLUME /var/lib/bazaar
EXPOSE 8080 9090
# 65532 is distroless's `nonroot`: no service needs root, and none gets it.
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/bazaar", "probe", "--timeout", "2s", "http://127.0.0.1:9090/health/ready"]
ENTRYPOINT ["/usr/local/bin/bazaar", "serve"]
