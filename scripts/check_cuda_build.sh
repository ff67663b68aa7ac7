#!/usr/bin/env bash
# Builds the embedding service with the `cuda` feature on a machine with no
# GPU and no CUDA install: the toolkit comes from NVIDIA's PyPI wheels.
#
#   ./scripts/check_cuda_build.sh            # both compute capabilities: 80 and 90
#   CUDA_COMPUTE_CAPS=90 ./scripts/check_cuda_build.sh
#
# Output: target/cuda/bin/sm80/embedding-service, target/cuda/bin/sm90/embedding-service
# (debug info stripped), built in their own target dir (target/cuda) so the normal
# target/ stays warm.
#
# Toolkit: CUDA 13.0 (nvcc, crt and cccl headers, nvvm, cudart, cublas,
# curand, nvrtc) from pinned wheels, `pip install --target target/cuda-toolkit`.
# CUDA 13 is the first release whose wheels carry a whole nvcc; the CUDA 12
# wheels (nvidia-cuda-nvcc-cu12 12.0-12.9) carry ptxas and libnvvm only, so a
# CUDA 12 build needs an installed toolkit: CUDA_HOME=/usr/local/cuda-12.x
# (or nvcc on PATH) is used as it is, and then no wheel is installed.
# Pins match the CUDA 13.0 that PyTorch's cu130 builds ship, so the binary runs
# against those libraries too (driver >= 580).
#
# Linking: candle 0.11.1 turns on cudarc 0.19's `dynamic-linking`, which links
# -lcuda -lcublas -lcublasLt -lcurand -lnvrtc (and candle-kernels -lcudart).
# The wheels carry only versioned libraries (libcublas.so.13), so unversioned
# names are linked beside them; libcuda.so is the driver's, absent here, so a
# stub with the driver's SONAME (libcuda.so.1) is compiled from the entry
# points cudarc declares (each returns CUDA_ERROR_STUB_LIBRARY). It sits in
# lib/stubs, used at link time only; at run time the host driver's
# libcuda.so.1 is loaded.
#
# Compute capability: candle-kernels builds its PTX for ONE capability per
# build (cudaforge reads CUDA_COMPUTE_CAP; 90 becomes compute_90a, which runs
# on sm_90 only, 80 stays compute_80, which the driver JIT-compiles on any
# newer GPU). So each capability is a separate build; cargo rebuilds only
# candle-kernels and what depends on it between the two.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
caps="${CUDA_COMPUTE_CAPS:-80 90}"
toolkit="${CUDA_TOOLKIT_DIR:-$root/target/cuda-toolkit}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/cuda}"
bin_dir="${CUDA_BIN_DIR:-$CARGO_TARGET_DIR/bin}"
wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
)
t_start=$SECONDS

# 1. The toolkit.
if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null 2>&1; then
  CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")")
fi
if [ -n "${CUDA_HOME:-}" ]; then
  echo "using the installed toolkit at $CUDA_HOME"
else
  CUDA_HOME="$toolkit/nvidia/cu13"
  if [ ! -x "$CUDA_HOME/bin/nvcc" ] || [ ! -e "$toolkit/.complete" ]; then
    echo "installing the CUDA 13.0 toolkit wheels into $toolkit"
    rm -rf "$toolkit"
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$toolkit" "${wheels[@]}"
    touch "$toolkit/.complete"
  fi
fi
export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"
nvcc --version | tail -2

# 2. Link names for the versioned libraries, and the driver stub.
lib="$CUDA_HOME/lib"
[ -d "$CUDA_HOME/lib64" ] && [ ! -d "$lib" ] && lib="$CUDA_HOME/lib64"
if [ -w "$lib" ]; then
  for so in "$lib"/lib*.so.[0-9]*; do
    [ -e "$so" ] || continue
    base=$(basename "$so"); name="${base%%.so.*}.so"
    case "$base" in *.alt.*|*builtins*) continue ;; esac
    [ -e "$lib/$name" ] || ln -s "$base" "$lib/$name"
  done
fi
if ! ls "$lib/stubs/libcuda.so" "$lib/libcuda.so" /usr/lib/x86_64-linux-gnu/libcuda.so >/dev/null 2>&1; then
  cargo fetch --locked -q
  cudarc=$(cargo metadata --format-version 1 --locked --features embedding-service/cuda | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(p["manifest_path"].rsplit("/", 1)[0])
        break')
  [ -f "$cudarc/src/driver/sys/mod.rs" ] || { echo "cudarc sources not found"; exit 1; }
  mkdir -p "$lib/stubs"
  grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" | sed -E 's/pub unsafe fn (.*)\(/\1/' | sort -u \
    | awk '{printf "int %s(void) { return 34; /* CUDA_ERROR_STUB_LIBRARY */ }\n", $1}' > "$lib/stubs/libcuda.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$lib/stubs/libcuda.so" "$lib/stubs/libcuda.c"
  ln -sf libcuda.so "$lib/stubs/libcuda.so.1"
  echo "driver stub: $lib/stubs/libcuda.so ($(wc -l < "$lib/stubs/libcuda.c") entry points from cudarc)"
fi
t_toolkit=$((SECONDS - t_start))

# 3. One build per compute capability.
mkdir -p "$bin_dir"
for cap in $caps; do
  t0=$SECONDS
  echo "building with CUDA_COMPUTE_CAP=$cap into $CARGO_TARGET_DIR"
  CUDA_COMPUTE_CAP=$cap cargo build --release --locked -p embedding-service --features cuda
  mkdir -p "$bin_dir/sm$cap"
  cp "$CARGO_TARGET_DIR/release/embedding-service" "$bin_dir/sm$cap/embedding-service"
  strip --strip-debug "$bin_dir/sm$cap/embedding-service"
  echo "sm$cap: $bin_dir/sm$cap/embedding-service ($(du -h "$bin_dir/sm$cap/embedding-service" | cut -f1)) in $((SECONDS - t0)) s"
done

# 4. The offline image's context (embedding-service/Dockerfile.cuda, target
# embedding-service-cuda-local): the binaries, and the CUDA libraries they
# load: their DT_NEEDED found in the toolkit, and those libraries' own
# (libcublas needs libcublasLt), hard-linked where the file system allows.
img="$root/target/cuda-image"
rm -rf "$img"; mkdir -p "$img/lib"
for cap in $caps; do
  mkdir -p "$img/sm$cap"
  cp -l "$bin_dir/sm$cap/embedding-service" "$img/sm$cap/" 2>/dev/null || cp "$bin_dir/sm$cap/embedding-service" "$img/sm$cap/"
done
first=$(set -- $caps; echo "$1")
needed() { readelf -d "$1" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p'; }
todo=$(needed "$img/sm$first/embedding-service")
while [ -n "$todo" ]; do
  next=""
  for so in $todo; do
    [ -e "$lib/$so" ] && [ ! -e "$img/lib/$so" ] || continue
    src=$(readlink -f "$lib/$so")
    cp -l "$src" "$img/lib/$so" 2>/dev/null || cp "$src" "$img/lib/$so"
    next="$next $(needed "$img/lib/$so")"
    case "$so" in libnvrtc.so*) next="$next $(cd "$lib" && ls libnvrtc-builtins.so.* | grep -v alt)" ;; esac
  done
  todo=$next
done
echo "image context: $img ($(du -sh "$img" | cut -f1); libraries: $(ls "$img/lib" | tr '\n' ' '))"
echo "cuda build done: toolkit ${t_toolkit} s, total $((SECONDS - t_start)) s (CUDA_HOME=$CUDA_HOME)"
