# analytics-mcp: a fully static binary on distroless, non-root, no shell.
#
#   docker build -t analytics-mcp .
#   docker run -p 8892:8892 -e DATABASE_URL=... -e MCP_AUTH_TOKENS=alice:... analytics-mcp
#
# tests/test_dockerfile.sh runs these same build steps outside Docker (CI has no Docker engine).

# ── build: the musl target gives a binary that needs no libc at all ──────────────────────────
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl
# ring (TLS, JWT) compiles a little C and assembly: it needs the musl C compiler wrapper.
RUN command -v x86_64-linux-musl-gcc >/dev/null \
 || (apt-get update && apt-get install -y --no-install-recommends musl-tools musl-dev)
WORKDIR /src
COPY Cargo.toml Cargo.lock main.rs ./
# compiled in with include_str! (the MCP Apps result view, the OAuth sign-in pages)
COPY web ./web
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/analytics-mcp /analytics-mcp

# ── run: distroless static, user nonroot (65532) ──────────────────────────────────────────────
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /analytics-mcp /usr/local/bin/analytics-mcp
# Bind every interface inside the container; the reverse proxy (Traefik/nginx) is the only
# thing that should reach it. The server refuses this without MCP_AUTH_TOKENS(_FILE).
ENV MCP_HOST=0.0.0.0 \
    MCP_PORT=8892
EXPOSE 8892
USER nonroot:nonroot
# No shell or curl here: the binary probes its own /healthz (0.0.0.0 → 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/analytics-mcp", "healthcheck"]
# Exec form: the server is PID 1 and handles SIGTERM itself (drains, exits 0).
ENTRYPOINT ["/usr/local/bin/analytics-mcp"]
