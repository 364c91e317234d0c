# One image for every role: the container's arguments choose it
# (`serve --role ingress`, `serve --role delivery`, `serve --role all`).
# Built with the pinned toolchain; run as a non-root user on distroless
# (glibc, CA roots, no shell), with a read-only root filesystem: the only
# writable places are the volumes the chart mounts (data_dir, /tmp).
#
#   docker build -t ferry:dev .
#   docker run --rm -p 2587:2587 -p 8025:8025 ferry:dev serve --role all

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# aws-lc-sys (rustls' default crypto in some dependencies) builds C code.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake perl \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ferry \
 && cp target/release/ferry /usr/local/bin/ferry

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/ferry /usr/local/bin/ferry
# SMTP 2525, submission 2587, submissions 2465, admin (probes, metrics, API) 8025:
# unprivileged ports, so no capability is needed; the Service maps 25/587/465.
EXPOSE 2525 2587 2465 8025
USER 65532:65532
ENV FERRY_CONFIG=/etc/ferry/ferry.toml
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["serve", "--role", "all"]
