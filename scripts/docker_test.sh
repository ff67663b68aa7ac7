#!/usr/bin/env bash
# The docker compose test: the same docker-compose.yml users run, with the
# runtime base made locally (no registry here) and the host-built binaries
# copied into the same runtime stage (`*-local` targets). Checks:
#  1. up from clean: both healthy, model through the model volume, /embed and /search correct;
#  2. --scale embedding-service=3: a burst of text requests reaches all three replicas;
#  3. restart, and down + up without -v: every point still there; kill -s KILL during
#     writes, then up: no acknowledged write lost;
#  4. a second indexing replica on the same volume fails fast, corrupting nothing;
#  5. down -v leaves nothing running. Cleans up on any exit.
# Skipped, with a message, only where no Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "docker test skipped: no Docker engine answers"; exit 0
fi
if docker compose version >/dev/null 2>&1; then compose_cmd=(docker compose); else compose_cmd=(docker-compose); fi
compose() { "${compose_cmd[@]}" "$@"; }
export COMPOSE_PROJECT_NAME=vecdbci
export RUNTIME_IMAGE="${RUNTIME_IMAGE:-vecdb/debian:bookworm}"
export EMBEDDING_TARGET=embedding-service-local INDEXING_TARGET=indexing-service-local
export BIN_DIR=target/docker-bin TAG=ci
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
for b in embedding-service indexing-service; do
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
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {'d': d}))" "$1"; }
count() { curl -fsS "$base/collections/documents/points/count" -H 'content-type: application/json' -d '{}' | json 'd["count"]'; }

# 1. Up from clean; the model reaches the container through the model volume.
compose up --no-start >/dev/null 2>&1
hub="${HF_HOME:-$HOME/.cache/huggingface}/hub"
docker run --rm -v "${COMPOSE_PROJECT_NAME}_models:/models" -v "$hub:/src:ro" "$RUNTIME_IMAGE" \
  sh -c 'mkdir -p /models/hub && cp -rL /src/. /models/hub/ && chown -R 10001:10001 /models'
compose up -d >/dev/null 2>&1
check "both services healthy" wait_healthy embedding-service 1 && check "indexing healthy" wait_healthy indexing-service 1
r=$(curl -fsS "$base/embed" -H 'content-type: application/json' -d '{"documents": [
  {"id": 1, "content": "a frankfurter served hot in a long bun", "metadata": {"pos": "n"}},
  {"id": 2, "content": "move fast by using your feet", "metadata": {"pos": "v"}},
  {"id": 3, "content": "a domestic animal that barks", "metadata": {"pos": "n"}}]}')
check "POST /embed through the published port" test "$(echo "$r" | json 'len(d["ids"])')" = 3
top=$(curl -fsS "$base/search" -H 'content-type: application/json' -d '{"query": "hot dog", "top_k": 1}' | json 'd["results"][0]["id"]')
check "POST /search finds the right document" test "$top" = 1

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
wait_healthy indexing-service 1 >/dev/null
check "restart keeps every point ($before)" test "$(count)" = "$before"
compose down >/dev/null 2>&1
compose up -d >/dev/null 2>&1
wait_healthy indexing-service 1 >/dev/null
check "down + up without -v keeps every point" test "$(count)" = "$before"
acked=$(mktemp)
( for i in $(seq 1000 1400); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$base/embed" -H 'content-type: application/json' \
      -d "{\"id\": $i, \"content\": \"acknowledged write $i\"}") || true
    [ "$code" = 200 ] && echo "$i" >> "$acked"
  done ) &
writer=$!
sleep 4
compose kill -s KILL indexing-service >/dev/null 2>&1
wait $writer || true
compose up -d >/dev/null 2>&1
wait_healthy indexing-service 1 >/dev/null
lost=0
while read -r i; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/collections/documents/points/$i")" = 200 ] || lost=$((lost + 1))
done < "$acked"
check "SIGKILL during writes: $(wc -l < "$acked") acknowledged, $lost lost" test "$lost" = 0 -a "$(wc -l < "$acked")" -gt 0
total=$(count)

# 4. A second indexing replica on the same data volume fails fast.
out=$(timeout 60 "${compose_cmd[@]}" run --rm --no-deps -T indexing-service 2>&1) && status=0 || status=$?
echo "  second replica exited with $status: $(echo "$out" | grep -io 'locked[^"]*' | head -1)"
check "a second replica on the same volume refuses to start" test "$status" != 0 -a "$status" != 124
check "...with a clear message" grep -qi "locked by another process" <<< "$out"
check "...and the first one is unharmed" test "$(count)" = "$total"

# 5. down -v leaves nothing.
compose down -v --remove-orphans >/dev/null 2>&1
check "down -v leaves no container" test -z "$(docker ps -aq --filter label=com.docker.compose.project=$COMPOSE_PROJECT_NAME)"
check "...and no volume" test -z "$(docker volume ls -q --filter label=com.docker.compose.project=$COMPOSE_PROJECT_NAME)"
[ "$failed" = 0 ]
