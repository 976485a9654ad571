# hyp container image: the supervisor runs under tini as PID 1's only child,
# owns the listening sockets and replaces workers without closing them.
#
#   docker build -t hyp .                                  (demo app)
#   docker run --read-only --tmpfs /tmp -p 8080:8080 hyp
#   docker run ... hyp run /app/my-app.js --set drain.delay=10s   (your app)
#
# With no registry reachable, test/e2e/base-image.sh builds NODE_IMAGE locally.
ARG NODE_IMAGE=node:26-bookworm-slim

# ---- build: full dependencies, compile TypeScript to dist/ -------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY supervisor ./supervisor
COPY apps ./apps
RUN npm run build

# ---- runtime: production dependencies and compiled output only ---------------
FROM ${NODE_IMAGE} AS runtime
# tini: forwards SIGTERM to the supervisor and reaps any zombie. No `-g`: the
# supervisor drains its workers over IPC; they must not get the signal too.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
WORKDIR /app
COPY package.json package-lock.json ./
# Type declarations and source maps are never read at run time: ~45 MB, most
# of it @kubernetes/client-node's (the endpoint-aware drain's client).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete \
 && rm -rf /root/.npm /tmp/*
COPY --from=build /src/dist/supervisor ./dist/supervisor
COPY --from=build /src/dist/apps ./dist/apps
# the demo's static files (the demo resolves them from dist/ to apps/demo/public)
COPY apps/demo/public ./apps/demo/public
# `hyp` on PATH for exec probes and the preStop hook (`hyp drain --wait`).
RUN printf '#!/bin/sh\nexec node /app/dist/supervisor/cli.js "$@"\n' > /usr/local/bin/hyp \
 && chmod 0755 /usr/local/bin/hyp

# Everything the process writes goes to /tmp (PID file included), so the image
# runs with a read-only root filesystem and a tmpfs or emptyDir at /tmp.
ENV NODE_ENV=production \
    HYP_SUPERVISOR_PID_FILE=/tmp/hyp.pid
# The image's `node` user, by number: with runAsNonRoot and no runAsUser (the
# restricted Pod Security profile, plain manifests) the kubelet only starts an
# image whose USER is a numeric UID it can check.
USER 1000:1000
# 8080 HTTP/WebSocket, 9090 admin (health, ready, drain, metrics), 7000 demo TCP echo
EXPOSE 8080 9090 7000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/supervisor/cli.js"]
CMD ["run", "dist/apps/demo/app.js"]
