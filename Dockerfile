# tsunagu in a container: a multi-stage build of the `tsunagu` binary (release profile,
# no debug info) on Debian bookworm, run as an unprivileged user.
#
#   docker build -t tsunagu .
#   docker run --rm -p 8080:8080 -v tsunagu-data:/var/lib/tsunagu tsunagu
#
# The default command serves the API and runs the pipeline on the embedded store and
# index in /var/lib/tsunagu (a volume). For the production deployment, mount a config
# file and pass it: `docker run ... -v ./tsunagu.toml:/etc/tsunagu.toml:ro tsunagu serve
# --config /etc/tsunagu.toml` (AWS credentials come from the usual AWS_* variables or the
# task role).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tsunagu \
    && install -D target/release/tsunagu /out/tsunagu

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/tsunagu --create-home tsunagu
COPY --from=build /out/tsunagu /usr/local/bin/tsunagu
USER tsunagu
ENV TSUNAGU_DATA_DIR=/var/lib/tsunagu \
    TSUNAGU_LISTEN=0.0.0.0:8080 \
    TSUNAGU_LOG_FORMAT=json
VOLUME ["/var/lib/tsunagu"]
EXPOSE 8080
ENTRYPOINT ["tsunagu"]
CMD ["serve"]
