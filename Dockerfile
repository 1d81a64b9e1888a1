# One image with the three binaries (gateway, worker, scheduler); compose
# picks the command. Migrations, Lua scripts and templates are compiled in.

# --- build -------------------------------------------------------------------
FROM rust:1.89-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*

# Dependencies first, in their own layer: only the manifests and lock file,
# with empty crates, so editing our code does not rebuild the world.
COPY Cargo.toml Cargo.lock ./
COPY core/Cargo.toml core/Cargo.toml
COPY gateway/Cargo.toml gateway/Cargo.toml
COPY worker/Cargo.toml worker/Cargo.toml
COPY scheduler/Cargo.toml scheduler/Cargo.toml
# The storm benchmark is a workspace member too: cargo needs its manifest to
# load the workspace, though the image does not ship it.
COPY ops/bench/Cargo.toml ops/bench/Cargo.toml
RUN for c in core gateway worker scheduler; do mkdir -p $c/src && echo '' > $c/src/lib.rs; done \
 && for c in gateway worker scheduler ops/bench; do mkdir -p $c/src && echo 'fn main() {}' > $c/src/main.rs; done \
 && mkdir -p migrations \
 && cargo build --release --locked -p gateway -p worker -p scheduler \
 && rm -rf core/src gateway/src worker/src scheduler/src ops/bench/src

# Our code.
COPY . .
RUN touch core/src/lib.rs gateway/src/lib.rs worker/src/lib.rs scheduler/src/lib.rs \
 && cargo build --release --locked -p gateway -p worker -p scheduler

# --- run ---------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home coupons
COPY --from=build /src/target/release/gateway /src/target/release/worker /src/target/release/scheduler /usr/local/bin/
USER coupons
ENV GATEWAY_ADDR=0.0.0.0:8080 WORKER_METRICS_ADDR=0.0.0.0:9101 SCHEDULER_METRICS_ADDR=0.0.0.0:9102 LOG_FORMAT=json
EXPOSE 8080 9101 9102
CMD ["gateway"]
