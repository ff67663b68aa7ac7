#!/usr/bin/env bash
# The GPU check: one script, run on a machine with an NVIDIA GPU, that proves
# the `cuda` build there and measures it. docs/BENCHMARKS.md ("GPU") has the
# exact call for the H200 machine it is written for (no network, 64 MiB copied).
#
#   bash scripts/gpu_check.sh                 # on the GPU machine
#   DEVICE=cpu bash scripts/gpu_check.sh      # the same plumbing on a CPU
#
# What it needs (prepared on the build machine by scripts/gpu/pack.sh, in
# target/gpu-carry/carry.tar.xz): the embedding service built with
# `--features cuda` (scripts/check_cuda_build.sh), and all-MiniLM-L6-v2 with
# its weights stored in f16 (45 MB instead of 91, to fit a 64 MiB carry; the
# f32 runs upcast them). EMBEDDING_BIN and MODEL_DIR override either. With
# no binary but cargo and an nvcc there, it builds one (cargo build --offline).
# The CUDA 13 libraries (cublas, cublasLt, curand, nvrtc, cudart) are taken
# from the machine's Python packages (PyTorch's nvidia-* wheels) or its CUDA
# install.
#
# Steps, each writing JSON lines to $OUT/results.jsonl:
#  1. the machine (nvidia-smi, driver), the binary's libraries (ldd);
#  2. a CPU f32 run of the same weights (the fused encoder) as a baseline;
#  3. for f32, f16 and bf16 on the GPU: /info (device, dtype, backend), the
#     parity test over HTTP against the float64 reference embeddings
#     (embedding-service/tests/fixtures): f32 cosine >= 0.9999, f16/bf16
#     >= 0.999, batched = alone; then HTTP throughput at 1, 32 and 256
#     concurrent clients, 1 and 32 texts per request (WordNet glosses);
#  4. sentence-transformers (PyTorch CUDA, fp32 and fp16) on the same GPU and
#     texts, in process;
#  5. memory pressure: another process takes all but a little of the GPU;
#     large requests must get 200 (batch split in halves) or 503
#     out_of_memory, never 500, and the service must recover;
#  6. $OUT/summary.md: the tables.
# Exit status: 0 when every check passed; the tables are written either way.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-$root/target/gpu-out}"
mkdir -p "$OUT"
work="${GPU_WORK:-/tmp/vecdb-gpu-check}"
carry="${GPU_CARRY:-$root/target/gpu-carry}"
port="${GPU_CHECK_PORT:-18101}"
budget="${GPU_CHECK_BUDGET_S:-420}"
seconds="${BENCH_SECONDS:-3}"
clients="${BENCH_CLIENTS:-1,32,256}"
per_request="${BENCH_PER_REQUEST:-1,32}"
texts="$root/tests/fixtures/wordnet-3000.tsv"
reference="$root/embedding-service/tests/fixtures/all-MiniLM-L6-v2.jsonl"
results="$OUT/results.jsonl"
: > "$results"
: > "$OUT/service.log"
t_start=$SECONDS
failed=0
log() { echo "[$(date +%T) +$((SECONDS - t_start))s] $*" | tee -a "$OUT/gpu_check.log"; }
env_row() { python3 -c 'import json,sys; print(json.dumps({"kind": "env", "what": sys.argv[1], "value": sys.argv[2]}))' "$1" "$2" >> "$results"; }
fail() { log "FAILED: $*"; failed=1; }
time_left() { [ $((SECONDS - t_start)) -lt "$budget" ]; }
export PYTHONUNBUFFERED=1

# 1. The machine, the binary, the model, the libraries.
mkdir -p "$work"
if [ -f "$carry/carry.tar.xz" ] && [ -z "${EMBEDDING_BIN:-}" ]; then
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$carry/carry.tar.xz" "$work"
  log "unpacked $(du -h "$carry/carry.tar.xz" | cut -f1) carry into $work"
fi
bin="${EMBEDDING_BIN:-$work/embedding-service}"
model="${MODEL_DIR:-$work/model}"
if [ ! -x "$bin" ] && command -v cargo >/dev/null && command -v nvcc >/dev/null; then
  log "no carried binary: building with cargo --offline (CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90})"
  CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CARGO_TARGET_DIR="$work/target" \
    cargo build --offline --release -p embedding-service --features cuda 2>&1 | tail -5 | tee -a "$OUT/gpu_check.log"
  bin="$work/target/release/embedding-service"
fi
[ -x "$bin" ] || { log "no embedding-service binary ($bin): run scripts/gpu/pack.sh on the build machine and carry target/gpu-carry"; exit 2; }
[ -f "$model/model.safetensors" ] || { log "no model at $model"; exit 2; }
if command -v nvidia-smi >/dev/null; then
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  env_row gpu "$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -1)"
fi
env_row cpu "$(nproc) cores, $(uname -m)"
# CUDA libraries: the Python packages' nvidia/*/lib folders, a CUDA install,
# and (for DEVICE=cpu on a build machine) the toolkit wheels and driver stub.
libdirs=$(python3 - "$root" <<'EOF'
import glob, os, site, sys
roots = []
try:
    roots += site.getsitepackages()
except AttributeError:
    pass
roots += [p for p in sys.path if p.endswith("site-packages")]
want = ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13", "libcudart.so.13")
dirs = []
for r in roots + [os.path.join(sys.argv[1], "target/cuda-toolkit")]:
    for d in glob.glob(os.path.join(r, "nvidia", "*", "lib")):
        if any(os.path.exists(os.path.join(d, w)) for w in want) and d not in dirs:
            dirs.append(d)
for d in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"):
    if os.path.isdir(d):
        dirs.append(d)
print(":".join(dirs))
EOF
)
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ "$DEVICE" != cpu ] && ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '; then
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib; do
    [ -e "$d/libcuda.so.1" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d" && break
  done
fi
if [ "$DEVICE" = cpu ] && ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '; then
  for d in "$root/target/cuda-toolkit/nvidia/cu13/lib/stubs" "${CUDA_STUB_DIR:-}"; do
    [ -e "$d/libcuda.so.1" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d" && log "no driver: the libcuda stub from $d (CUDA calls fail, as on a host without GPU)"
  done
fi
ldd "$bin" > "$OUT/ldd.txt" 2>&1
if grep -q "not found" "$OUT/ldd.txt"; then
  log "libraries missing for $bin:"; grep "not found" "$OUT/ldd.txt" | tee -a "$OUT/gpu_check.log"; exit 2
fi
env_row binary "$(du -h "$bin" | cut -f1) $(basename "$bin"); libraries: $(grep -oE 'lib(cuda|cublas|cublasLt|curand|nvrtc|cudart)\.so[.0-9]* => [^ ]+' "$OUT/ldd.txt" | tr '\n' ' ')"
env_row model "$(du -sh "$model" | cut -f1) at $model (weights stored in $(python3 -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; h=json.loads(f.read(n)); print(sorted({v["dtype"] for k,v in h.items() if k!="__metadata__"}))' "$model/model.safetensors"))"

pid=""
start_service() { # device dtype [KEY=VALUE ...]
  local device=$1 dtype=$2; shift 2
  log "starting the service: device=$device dtype=$dtype $*"
  env EMBEDDING__DEVICE="$device" EMBEDDING__DTYPE="$dtype" EMBEDDING__MODEL__PATH="$model" \
    EMBEDDING__HOST=127.0.0.1 EMBEDDING__PORT="$port" HF_HUB_OFFLINE=1 RUST_LOG="${RUST_LOG:-warn}" "$@" \
    "$bin" serve >> "$OUT/service.log" 2>&1 &
  pid=$!
  python3 - "$port" "$pid" <<'EOF'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
t0 = time.time()
while time.time() - t0 < 240:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the service exited during start (see service.log)")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit("the service was not healthy within 240 s")
EOF
}
stop_service() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  pid=""
}
trap 'stop_service' EXIT
info() {
  python3 -c 'import json,sys,urllib.request; i=json.load(urllib.request.urlopen(sys.argv[1]+"/info")); print(json.dumps({"kind":"env","what":"info "+sys.argv[2],"value":{k:i.get(k) for k in ("device","dtype","backend","max_batch_tokens")}}))' \
    "http://127.0.0.1:$port" "$1" | tee -a "$results"
}
url="http://127.0.0.1:$port"

# 2. The CPU baseline from the same weights.
baseline="$work/cpu_f32.jsonl"
if start_service cpu f32; then
  info "cpu f32"
  python3 scripts/gpu/parity.py "$url" "$reference" 0.999 --save "$baseline" --label "cpu f32 (fused)" | tee -a "$results" \
    || fail "parity cpu f32"
  if [ "$DEVICE" = cpu ]; then
    python3 scripts/gpu/http_bench.py "$url" "$texts" --clients "$clients" --per-request "$per_request" \
      --seconds "$seconds" --label "cpu f32 (fused)" | tee -a "$results" || fail "throughput cpu f32"
  fi
else
  fail "the service did not start on the CPU"
fi
stop_service

# 3. The GPU runs (DEVICE=cpu: the candle graph on the CPU, f32 only).
if [ "$DEVICE" = cpu ]; then runs="cpu:f32:candle"; else runs="${GPU_RUNS:-cuda:f32 cuda:f16 cuda:bf16}"; fi
for run in $runs; do
  IFS=: read -r device dtype backend <<< "$run"
  backend="${backend:-candle}"
  time_left || { log "budget of ${budget}s spent: skipping $run"; continue; }
  label="$device $dtype ($backend)"
  if ! start_service "$device" "$dtype" EMBEDDING__BACKEND="$backend"; then
    fail "the service did not start: $label"; stop_service; continue
  fi
  info "$label"
  threshold=0.999; [ "$dtype" = f32 ] && threshold="${PARITY_F32:-0.9999}"
  python3 scripts/gpu/parity.py "$url" "$reference" "$threshold" --against "$baseline" --label "$label" \
    | tee -a "$results" || fail "parity $label"
  python3 scripts/gpu/http_bench.py "$url" "$texts" --clients "$clients" --per-request "$per_request" \
    --seconds "$seconds" --label "$label" | tee -a "$results" || fail "throughput $label"
  stop_service
done

# 4. sentence-transformers beside it.
if [ "$DEVICE" != cpu ] && time_left; then
  if python3 -c 'import torch, sentence_transformers; assert torch.cuda.is_available()' 2>/dev/null; then
    log "sentence-transformers fp32 and fp16"
    timeout 180 python3 scripts/gpu/st_bench.py "$model" "$texts" --batches 32,256 | tee -a "$results" \
      || fail "sentence-transformers run"
  else
    log "sentence-transformers or a CUDA PyTorch missing: peer skipped"
  fi
fi

# 5. Memory pressure.
if [ "$DEVICE" != cpu ] && time_left; then
  if start_service cuda f32 EMBEDDING__MAX_BATCH_TOKENS=32768; then
    timeout 180 python3 scripts/gpu/oom_check.py "$url" | tee -a "$results" || fail "memory pressure"
    kill -0 "$pid" 2>/dev/null || fail "the service died under memory pressure"
    echo "{\"kind\": \"env\", \"what\": \"batches split for memory (service log)\", \"value\": $(grep -c 'retrying the batch in two halves' "$OUT/service.log")}" >> "$results"
  else
    fail "the service did not start for the memory check"
  fi
  stop_service
fi

# 6. The tables.
python3 scripts/gpu/summarize.py "$results" > "$OUT/summary.md"
cat "$OUT/summary.md"
log "done in $((SECONDS - t_start)) s; $([ $failed = 0 ] && echo 'every check passed' || echo 'some checks FAILED')"
exit $failed
