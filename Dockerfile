# One image holding every ngit-sync binary; each compose service runs one of them
# (docker-compose.yml). Build: `docker build -t ngit-sync:latest .` or `docker compose build`.
#
# Machines that cannot pull the base images below build the same runtime image from release
# binaries built on the host instead: scripts/build-local-images (see docs/operations.md).
# Keep the runtime stage and scripts/local-images/ngit-sync.Dockerfile alike.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build: the whole workspace, release profile, exactly the locked dependencies ---
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# lmdb and secp256k1 are built from C sources by their -sys crates; the slim image has gcc.
RUN cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && for bin in ngit-sync ngit-sync-discovery ngit-sync-connector ngit-sync-sink \
               ngit-sync-batch-tracker ngit-sync-metrics-exporter; do \
        cp "target/release/$bin" /out/; \
    done

# --- runtime: Debian slim, non-root, no shell tools beyond Debian's essentials ---
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: NATS over TLS with the system roots (wss:// relays use bundled roots).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# /data is the embedded home relay's LMDB (`ngit-sync relay`); named volumes mounted there
# start out owned by this user.
RUN groupadd --system --gid 10001 ngit \
 && useradd --system --uid 10001 --gid ngit --home-dir /data --no-create-home --shell /usr/sbin/nologin ngit \
 && mkdir -p /data \
 && chown ngit:ngit /data
COPY --from=build /out/ /usr/local/bin/
USER ngit:ngit
WORKDIR /data
# Plain log lines: docker logs and log shippers show escape codes as garbage.
ENV RUST_LOG=info NO_COLOR=1
LABEL org.opencontainers.image.title="ngit-sync" \
      org.opencontainers.image.description="Proactive sync of NIP-34 git events into a GRASP home relay" \
      org.opencontainers.image.licenses="MIT"
# Services: ngit-sync-discovery, -connector, -sink, -batch-tracker, -metrics-exporter;
# tools: ngit-sync status|watch|ping|relay.
CMD ["ngit-sync", "--help"]
