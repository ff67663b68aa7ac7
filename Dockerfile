# Images for both services.
#
# Standard path (a machine with a registry):
#   docker compose build            # targets embedding-service, indexing-service
# builds in a Rust image and copies the binaries into a slim Debian runtime.
#
#   (and indexing-lb: HAProxy in front of the indexing replicas)
# Offline path (this project's CI, no registry): the runtime base is a Debian
# rootfs imported locally (scripts/docker_base_image.sh) and the binaries are
# built on the host; the `*-local` targets copy them into the very same
# runtime stage. Stages before a target are the only ones built, so the
# `*-local` targets never touch the Rust image.
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

# The load balancer in front of the indexing replicas (HAProxy from
# Debian, on the same runtime base; lb/haproxy.cfg). Root only to install.
# First, so that builders that build every stage before a target (the
# classic one) build nothing else for it.
FROM ${RUNTIME_IMAGE} AS indexing-lb
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY lb/haproxy.cfg /etc/haproxy/haproxy.cfg
EXPOSE 8000
USER haproxy
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]

FROM ${RUNTIME_IMAGE} AS runtime
# Non-root, with writable volume mount points (a new named volume copies
# this ownership).
RUN mkdir -p /data /models /etc/vecdb && chown 10001:10001 /data /models
COPY config.yaml /etc/vecdb/config.yaml
ENV CONFIG_PATH=/etc/vecdb/config.yaml HF_HOME=/models RUST_LOG=info
USER 10001:10001

FROM runtime AS embedding-service-local
ARG BIN_DIR=target/release
COPY ${BIN_DIR}/embedding-service /usr/local/bin/embedding-service
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=60 CMD ["/usr/local/bin/embedding-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/embedding-service"]
CMD ["serve"]

FROM runtime AS indexing-service-local
ARG BIN_DIR=target/release
COPY ${BIN_DIR}/indexing-service /usr/local/bin/indexing-service
# The command line client (`vdb`, cli/), for `docker compose exec`.
COPY ${BIN_DIR}/vdb /usr/local/bin/vdb
ENV INDEXING__DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=30 CMD ["/usr/local/bin/indexing-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/indexing-service"]
CMD ["serve"]

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p embedding-service -p indexing-service -p vdb-cli

FROM runtime AS embedding-service
COPY --from=builder /src/target/release/embedding-service /usr/local/bin/embedding-service
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=60 CMD ["/usr/local/bin/embedding-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/embedding-service"]
CMD ["serve"]

FROM runtime AS indexing-service
COPY --from=builder /src/target/release/indexing-service /usr/local/bin/indexing-service
COPY --from=builder /src/target/release/vdb /usr/local/bin/vdb
ENV INDEXING__DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=30 CMD ["/usr/local/bin/indexing-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/indexing-service"]
CMD ["serve"]
