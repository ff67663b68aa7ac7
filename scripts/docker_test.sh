#!/usr/bin/env bash
# The docker compose test: the same docker-compose.yml users run, with the
# runtime base made locally (no registry here) and the host-built binaries
# copied into the same runtime stage (`*-local` targets). Checks:
#  1. up from clean: both healthy, model through the model volume, /embed and /search correct;
#  2. --scale embedding-service=3: a burst of text requests reaches all three replicas;
#  3. restart, and down + up without -v: every point still there;
#  4. --scale indexing-service=3 behind the load balancer: one writer, reads served by
#     every replica, writes through the front door; the writer killed with SIGKILL
#     during a write loop: takeover time (target <= 5 s), no acknowledged write
#     lost, failed reads during the takeover; scale down to 1 and back to 3;
#     down + up: all data there;
#  5. down -v leaves nothing running. Cleans up on any exit.
# Skipped, with a message, only where no Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "docker test skipped: no Docker engine answers"; exit 0
fi
if docker compose version >/dev/null 2>&1; then compose_cmd=(docker compose); else compose_cmd=(docker-compose); fi
compose() { "${compose_cmd[@]}" "$@"; }
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-vecdbci}"
export RUNTIME_IMAGE="${RUNTIME_IMAGE:-vecdb/debian:bookworm}"
export EMBEDDING_TARGET=embedding-service-local INDEXING_TARGET=indexing-service-local
export BIN_DIR=target/docker-bin TAG="${TAG:-ci}"
export INDEXING_PORT="${INDEXING_PORT:-18800}"
base="http://127.0.0.1:$INDEXING_PORT"
passed=0; failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
cleanup() { compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap 'cleanup; echo "docker: $passed passed, $failed failed"' EXIT
cleanup

# Host-built binaries into the build context: the ones the test command just
# built (debug profile, dependencies optimised), or DOCKER_BIN_PROFILE=release.
mkdir -p "$BIN_DIR"
for b in embedding-service indexing-service vdb; do
  src=target/${DOCKER_BIN_PROFILE:-debug}/$b
  [ -x "$src" ] || { echo "$src is not built (cargo build --workspace first)"; exit 1; }
  cp "$src" "$BIN_DIR/$b"; strip --strip-debug "$BIN_DIR/$b" 2>/dev/null || true
done
./scripts/docker_base_image.sh
compose build >/dev/null

wait_healthy() { # service [count] [seconds]
  local svc=$1 n=${2:-1} t=${3:-240} end=$((SECONDS + ${3:-240}))
  while [ $SECONDS -lt $end ]; do
    local ids healthy=0
    ids=$(compose ps -q "$svc")
    for id in $ids; do
      [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && healthy=$((healthy + 1))
    done
    [ "$healthy" -ge "$n" ] && return 0
    sleep 1
  done
  echo "$svc: $n healthy not reached in ${t}s"; compose ps; compose logs --tail=30 "$svc"; return 1
}
# The load balancer finds replicas through Docker's DNS within a few seconds.
wait_door() { for _ in $(seq 1 60); do curl -fsS -o /dev/null "$base/health" 2>/dev/null && return 0; sleep 0.5; done; echo "front door $base not answering"; return 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {'d': d}))" "$1"; }
count() { curl -fsS "$base/collections/documents/points/count" -H 'content-type: application/json' -d '{}' | json 'd["count"]'; }

# 1. Up from clean; the model reaches the container through the model volume.
compose up --no-start >/dev/null 2>&1
hub="${HF_HOME:-$HOME/.cache/huggingface}/hub"
docker run --rm -v "${COMPOSE_PROJECT_NAME}_models:/models" -v "$hub:/src:ro" "$RUNTIME_IMAGE" \
  sh -c 'mkdir -p /models/hub && cp -rL /src/. /models/hub/ && chown -R 10001:10001 /models'
compose up -d >/dev/null 2>&1
check "both services healthy" wait_healthy embedding-service 1 && check "indexing healthy" wait_healthy indexing-service 1
check "the load balancer answers on the published port" wait_door
r=$(curl -fsS "$base/embed" -H 'content-type: application/json' -d '{"documents": [
  {"id": 1, "content": "a frankfurter served hot in a long bun", "metadata": {"pos": "n"}},
  {"id": 2, "content": "move fast by using your feet", "metadata": {"pos": "v"}},
  {"id": 3, "content": "a domestic animal that barks", "metadata": {"pos": "n"}}]}')
check "POST /embed through the published port" test "$(echo "$r" | json 'len(d["ids"])')" = 3
top=$(curl -fsS "$base/search" -H 'content-type: application/json' -d '{"query": "hot dog", "top_k": 1}' | json 'd["results"][0]["id"]')
check "POST /search finds the right document" test "$top" = 1
vdb_id=$(compose ps -q indexing-service | head -1)
check "vdb in the indexing image sees the collection" sh -c "docker exec '$vdb_id' /usr/local/bin/vdb --url http://127.0.0.1:8000 collections list | grep -q documents"

# 2. Three embedding replicas; a burst of text requests reaches each.
compose up -d --scale embedding-service=3 --no-recreate >/dev/null 2>&1
check "three embedding replicas healthy" wait_healthy embedding-service 3
sleep 6 # the indexing service re-resolves the replicas every 5 s
seq 1 90 | xargs -P 6 -I{} curl -fsS -o /dev/null "$base/search" -H 'content-type: application/json' -d '{"query": "query number {} about animals", "top_k": 3}'
served=0
for id in $(compose ps -q embedding-service); do
  n=$(docker exec "$id" /usr/local/bin/embedding-service probe /metrics | awk '/^embed_texts_total/ {print $2}')
  echo "  replica ${id:0:12}: embed_texts_total ${n:-0}"
  [ "${n:-0}" -gt 0 ] && served=$((served + 1))
done
check "the burst reached all three replicas" test "$served" = 3

# 3. Restarts keep every point; SIGKILL during writes loses no acknowledged write.
before=$(count)
compose restart >/dev/null 2>&1
wait_healthy indexing-service 1 >/dev/null; wait_door
check "restart keeps every point ($before)" test "$(count)" = "$before"
compose down >/dev/null 2>&1
compose up -d >/dev/null 2>&1
wait_healthy indexing-service 1 >/dev/null; wait_door
check "down + up without -v keeps every point" test "$(count)" = "$before"

# 4. Three indexing replicas behind the load balancer: one writer, two
#    followers; reads on every replica, writes through the front door, the
#    writer SIGKILLed during a write loop (takeover time, nothing
#    acknowledged lost, failed reads), scale down and up, down + up.
compose up -d --scale indexing-service=3 --no-recreate >/dev/null 2>&1
check "three indexing replicas healthy" wait_healthy indexing-service 3
metric() { docker exec "$1" /usr/local/bin/indexing-service probe /metrics | awk -v m="$2" '$1 == m {print $2}'; }
writers=0; writer_id=
for id in $(compose ps -q indexing-service); do
  w=$(metric "$id" index_replica_is_writer)
  [ "${w:-0}" = 1 ] && { writers=$((writers + 1)); writer_id=$id; }
done
check "exactly one writer among the replicas" test "$writers" = 1
curl -fsS -o /dev/null "$base/collections" -H 'content-type: application/json' \
  -d '{"name": "rep", "dimension": 4, "metric": "dot", "flush_threshold": {"vectors": 200}}'
reads_of() { metric "$1" 'index_http_requests_total{route="/collections/{name}/points/count",status="200"}'; }
declare -A reads_before
for id in $(compose ps -q indexing-service); do reads_before[$id]=$(reads_of "$id"); done
seq 1 60 | xargs -P 6 -I@ curl -fsS -o /dev/null "$base/collections/rep/points/count" -H 'content-type: application/json' -d '{}' || true
served=0
for id in $(compose ps -q indexing-service); do
  n=$(reads_of "$id"); d=$(( ${n:-0} - ${reads_before[$id]:-0} ))
  echo "  replica ${id:0:12}: $d of 60 reads"
  [ "$d" -gt 0 ] && served=$((served + 1))
done
check "reads through the front door reach all three replicas" test "$served" = 3
report=$(mktemp)
python3 - "$base" "$writer_id" "$report" <<'PY'
import json, subprocess, sys, threading, time, urllib.request, urllib.error
base, writer, out = sys.argv[1], sys.argv[2], sys.argv[3]
def call(method, path, body=None, headers=None, timeout=10):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), None
    except Exception:
        return 0, {}, None
acked, maxop, stop, refused, slowest = {}, [0], threading.Event(), [0], [0.0]
killed, first_ok = [None], [None]
reads = {"ok": 0, "failed": 0, "slowest_s": 0.0}
def writes(t):
    k = 0
    while not stop.is_set():
        k += 1; i = 10_000 * (t + 1) + k
        sent = time.time()
        st, h, _ = call("PUT", "/collections/rep/points", {"points": [{"id": i, "vector": [i, 1, 2, 3], "metadata": {"i": i}}]})
        if killed[0] and sent > killed[0]:
            slowest[0] = max(slowest[0], time.time() - sent)
        if st == 200:
            acked[i] = True; maxop[0] = max(maxop[0], int(h.get("x-operation", h.get("X-Operation", 0))))
            # The takeover shows in the first write sent after the kill and acknowledged.
            if killed[0] and sent > killed[0] and not first_ok[0]: first_ok[0] = time.time()
        elif killed[0] and not first_ok[0]:
            refused[0] += 1
def read_loop():
    while not stop.is_set():
        sent = time.time()
        st, _, _ = call("POST", "/collections/rep/points/count", {})
        # Reads in the 3 s after the kill (the load balancer's detection included).
        if killed[0] and killed[0] < sent < killed[0] + 3:
            reads["ok" if st == 200 else "failed"] += 1
            reads["slowest_s"] = round(max(reads["slowest_s"], time.time() - sent), 3)
        time.sleep(0.01)
ts = [threading.Thread(target=writes, args=(t,)) for t in range(3)] + [threading.Thread(target=read_loop)]
for t in ts: t.start()
time.sleep(3)
before = len(acked)
killed[0] = time.time()
subprocess.run(["docker", "kill", "-s", "KILL", writer], check=True, capture_output=True)
deadline = time.time() + 30
while not first_ok[0] and time.time() < deadline: time.sleep(0.02)
time.sleep(3)
stop.set()
for t in ts: t.join()
takeover = (first_ok[0] - killed[0]) if first_ok[0] else None
# Every acknowledged write, read back through the front door after the last op.
ids = sorted(acked)
missing = []
for j in range(0, len(ids), 1000):
    st, _, b = call("POST", "/collections/rep/points", {"ids": ids[j:j+1000], "consistency": {"after": maxop[0]}})
    got = {p["id"] for p in (b or {}).get("points", [])} if st == 200 else set()
    missing += [i for i in ids[j:j+1000] if i not in got]
r = {"acked": len(ids), "before_kill": before, "takeover_s": takeover, "lost": len(missing),
     "reads_during_takeover": reads, "writes_refused_during_takeover": refused[0],
     "slowest_write_after_kill_s": round(slowest[0], 3), "max_op": maxop[0]}
json.dump(r, open(out, "w")); print("  " + json.dumps(r))
PY
takeover=$(json 'd["takeover_s"]' < "$report")
check "SIGKILL of the writer during writes: takeover in ${takeover}s (target <= 5 s)" python3 -c "import sys; t=$takeover; sys.exit(0 if t is not None and t <= 5 else 1)"
check "...no acknowledged write lost ($(json 'd["acked"]' < "$report") acknowledged)" test "$(json 'd["lost"]' < "$report")" = 0
echo "  reads in the 3 s after the kill: $(json 'd["reads_during_takeover"]' < "$report"); writes refused during the takeover (503, clients retry): $(json 'd["writes_refused_during_takeover"]' < "$report"); slowest write sent after the kill: $(json 'd["slowest_write_after_kill_s"]' < "$report") s"

total=$(curl -fsS "$base/collections/rep/points/count" -H 'content-type: application/json' -d "{\"consistency\": {\"after\": $(json 'd["max_op"]' < "$report")}}" | json 'd["count"]')
check "...every replica left agrees on the count ($total)" test "$total" -ge "$(json 'd["acked"]' < "$report")"
compose up -d --scale indexing-service=1 --no-recreate >/dev/null 2>&1
n_after() { for _ in $(seq 1 40); do c=$(curl -fsS "$base/collections/rep/points/count" -H 'content-type: application/json' -d '{}' 2>/dev/null | json 'd["count"]' 2>/dev/null) && [ "$c" = "$total" ] && return 0; sleep 0.5; done; return 1; }
check "scaled down to one replica: all data there" n_after
compose up -d --scale indexing-service=3 --no-recreate >/dev/null 2>&1
check "scaled back up to three" wait_healthy indexing-service 3
check "...all data there" n_after
w=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$base/collections/rep/points" -H 'content-type: application/json' -d '{"points": [{"id": 1, "vector": [1, 1, 2, 3]}]}')
check "...and writes through the front door succeed" test "$w" = 200
total=$((total + 1))
compose down >/dev/null 2>&1
compose up -d --scale indexing-service=3 >/dev/null 2>&1
wait_healthy indexing-service 3 >/dev/null; wait_door
check "down + up with three replicas: all data there" n_after

# 5. down -v leaves nothing.
compose down -v --remove-orphans >/dev/null 2>&1
check "down -v leaves no container" test -z "$(docker ps -aq --filter label=com.docker.compose.project=$COMPOSE_PROJECT_NAME)"
check "...and no volume" test -z "$(docker volume ls -q --filter label=com.docker.compose.project=$COMPOSE_PROJECT_NAME)"
[ "$failed" = 0 ]
