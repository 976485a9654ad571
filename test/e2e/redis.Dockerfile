# Redis for the rollout harness's pods (the WebSocket hub's cross-pod bus and
# channel history). No registry is reachable, so it is built from the locally
# bootstrapped base (test/e2e/base-image.sh) with Debian's redis-server (7.x;
# the hub's Redis Streams history needs Redis >= 7).
ARG BASE_IMAGE=node:26-bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
# In-memory only: no RDB snapshots, no AOF (the container's root may be read-only).
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "/tmp"]
