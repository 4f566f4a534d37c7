# The model server as a container, run like TensorFlow Serving's:
#   docker build -t mnist-server .
#   docker run -v $PWD/models:/models -e MODEL_NAME=mnist -e MODEL_PATH=/models/mnist -p 8500:8500 -p 8501:8501 mnist-server
# Extra flags go after the image name (e.g. --enable_batching=true). The server runs as the
# unprivileged user 10001 (the models volume must be readable by it) and the health check asks
# grpc.health.v1 on HEALTH_ADDRESS (with --ssl_config_file, pass --grpc_health_port=8510 and
# -e HEALTH_ADDRESS=127.0.0.1:8510: the check dials without TLS).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p server -p client

FROM debian:bookworm-slim
# Vulkan loader and Mesa drivers: --device gpu / auto work when the host exposes a GPU.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 serving \
 && useradd --system --uid 10001 --gid serving --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin serving
COPY --from=build /src/target/release/server /src/target/release/client /usr/local/bin/
ENV MODEL_NAME=model MODEL_PATH=/models/model HEALTH_ADDRESS=127.0.0.1:8500
EXPOSE 8500 8501
USER 10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD /usr/local/bin/client health --server "$HEALTH_ADDRESS" --connect_timeout 4 || exit 1
ENTRYPOINT ["/usr/local/bin/server", "--port=8500", "--rest_api_port=8501"]
