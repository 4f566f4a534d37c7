# The model server as a container, run like TensorFlow Serving's:
#   docker build -t mnist-server .
#   docker run -v $PWD/models:/models -e MODEL_NAME=mnist -e MODEL_PATH=/models/mnist -p 8500:8500 -p 8501:8501 mnist-server
# Extra flags go after the image name (e.g. --enable_batching=true).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p server -p client

FROM debian:bookworm-slim
# Vulkan loader and Mesa drivers: --device gpu / auto work when the host exposes a GPU.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/server /src/target/release/client /usr/local/bin/
ENV MODEL_NAME=model MODEL_PATH=/models/model
EXPOSE 8500 8501
ENTRYPOINT ["/usr/local/bin/server", "--port=8500", "--rest_api_port=8501"]
