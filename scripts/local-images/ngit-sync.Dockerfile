# The ngit-sync image from release binaries built on the host (scripts/build-local-images),
# for Docker engines that cannot pull rust: or debian: images. Mirrors the runtime stage of
# ./Dockerfile: same user, paths and defaults, so docker-compose.yml runs it unchanged.
ARG BASE
FROM ${BASE}
RUN groupadd --system --gid 10001 ngit \
 && useradd --system --uid 10001 --gid ngit --home-dir /data --no-create-home --shell /usr/sbin/nologin ngit \
 && mkdir -p /data \
 && chown ngit:ngit /data
COPY bin/ /usr/local/bin/
USER ngit:ngit
WORKDIR /data
# Plain log lines: docker logs and log shippers show escape codes as garbage.
ENV RUST_LOG=info NO_COLOR=1
LABEL org.opencontainers.image.title="ngit-sync" ngit-sync.local-image="true"
CMD ["ngit-sync", "--help"]
