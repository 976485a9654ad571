#!/usr/bin/env bash
# Make a Docker engine (and the tools the e2e harness uses) available on this
# machine: Debian's docker.io, debootstrap (for base-image.sh) and haproxy (the
# harness's Service/Ingress). Starts dockerd in the background when no engine
# answers and waits for it. Idempotent: a second run does nothing.
#
# Exit status: 0 when `docker info` answers; non-zero, with the reason and the
# tail of the dockerd log, when the engine cannot be installed or started.
set -euo pipefail

log() { printf 'docker-setup: %s\n' "$*" >&2; }
fail() { log "error: $*"; exit 1; }

DOCKERD_LOG="${HYP_DOCKERD_LOG:-/tmp/hyp-dockerd.log}"
WAIT_SECONDS="${HYP_DOCKERD_WAIT:-60}"

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root and no sudo: cannot install packages or start dockerd"
  SUDO=(sudo -n)
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || fail "apt-get install ${missing[*]} failed"
fi

engine_up() { docker info >/dev/null 2>&1; }

if engine_up; then
  log "engine already running"
  exit 0
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the daemon must outlive this script and the CI step that ran it.
  "${SUDO[@]}" setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$WAIT_SECONDS"); do
  if engine_up; then
    log "engine ready: $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)"
    exit 0
  fi
  sleep 1
done

log "dockerd log tail:"
tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
fail "the Docker engine did not answer within ${WAIT_SECONDS}s (docker info fails); the e2e harness cannot run here"
