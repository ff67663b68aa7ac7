#!/usr/bin/env bash
# Makes the runtime base image locally, for machines that cannot pull from a
# registry: debootstrap a minimal Debian bookworm (the same glibc the host
# binaries are built against) and `docker import` it under $RUNTIME_IMAGE.
set -euo pipefail
tag="${RUNTIME_IMAGE:-vecdb/debian:bookworm}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag present"; exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap; }
mirror=$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
mirror="${mirror:-http://deb.debian.org/debian}"
root=$(mktemp -d /tmp/vecdb-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "base image $tag imported from a debootstrap of bookworm ($mirror)"
