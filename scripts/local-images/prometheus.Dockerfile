# A Prometheus image from Debian's prometheus package (scripts/build-local-images). Like the
# official prom/prometheus image: /bin/prometheus and /bin/promtool, user nobody, data in
# /prometheus, wget for the compose health check.
ARG BASE
FROM ${BASE}
COPY prometheus promtool /bin/
RUN mkdir -p /etc/prometheus /prometheus \
 && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
VOLUME ["/prometheus"]
LABEL ngit-sync.local-image="true"
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
