#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a GPU machine that has no network
# and takes at most 64 MiB of working tree: the `cuda` build of the service
# and all-MiniLM-L6-v2 with f16 weights, as target/gpu-carry/carry.tar.xz
# (target/ is git-ignored, so it travels only when named in the call's carry
# list).
#
#   ./scripts/check_cuda_build.sh && ./scripts/gpu/pack.sh
#
# CUDA_COMPUTE_CAP picks the build (default 90: H100/H200); MODEL_DIR the
# model directory (default: the one `embedding-service fetch-model` prints).
set -euo pipefail
cd "$(dirname "$0")/../.."
cap="${CUDA_COMPUTE_CAP:-90}"
bin="${EMBEDDING_BIN:-target/cuda/bin/sm$cap/embedding-service}"
limit_mib="${CARRY_LIMIT_MIB:-56}"
[ -x "$bin" ] || { echo "$bin missing: run scripts/check_cuda_build.sh first"; exit 1; }
if [ -z "${MODEL_DIR:-}" ]; then
  fetch=target/release/embedding-service
  [ -x "$fetch" ] || fetch=target/debug/embedding-service
  MODEL_DIR=$(HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-0}" "$fetch" fetch-model | tail -1)
fi
stage=$(mktemp -d /tmp/vecdb-gpu-pack.XXXXXX)
trap 'rm -rf "$stage"' EXIT
cp "$bin" "$stage/embedding-service"
strip --strip-debug "$stage/embedding-service" 2>/dev/null || true
python3 scripts/gpu/f16_model.py "$MODEL_DIR" "$stage/model"
mkdir -p target/gpu-carry
tar -C "$stage" -cf - embedding-service model | xz -T0 -6 > target/gpu-carry/carry.tar.xz
size=$(stat -c %s target/gpu-carry/carry.tar.xz)
echo "target/gpu-carry/carry.tar.xz: $((size / 1048576)) MiB (binary sm$cap from $bin, model from $MODEL_DIR)"
tree=$(git ls-files -z | xargs -0 cat | wc -c)
echo "with the tracked tree ($((tree / 1048576)) MiB) the call sends about $(((size + tree) / 1048576)) MiB of 64"
[ $((size / 1048576)) -le "$limit_mib" ] || { echo "over ${limit_mib} MiB: too large to carry"; exit 1; }
