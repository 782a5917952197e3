#!/usr/bin/env bash
# Instructions per accepted order in the API process, counted by valgrind's callgrind:
# unlike a rate or a CPU time, the count does not move with what else the machine is
# doing, so two versions of the submission path can be compared on a shared machine.
#
#   bench/submission_instructions.sh [REF ...]     (from the project's root)
#
# With no REF it measures the working tree; each REF (a commit, a branch) is measured
# from a temporary worktree, with this tree's .venv, one after the other. For each: a
# fresh database and Redis namespace, a chain and a worker (nice 19) as usual, and
# `dexecutor api` under callgrind with instrumentation off until a 5 s warm-up is done;
# then wrk (1 thread, 16 connections) for 20 s with instrumentation on. The count is
# user-space instructions (the kernel's share of system calls is not in it) divided by
# the orders stored meanwhile. Needs valgrind and wrk (Debian's packages), and the
# DATABASE_URL / REDIS_URL of a PostgreSQL and Redis to use (their server only: a
# database and Redis db 9 of their own are used and dropped).
set -u
root=$(pwd)
server=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
[[ $server =~ ^([a-z]+://[^/]*) ]] && server=${BASH_REMATCH[1]}  # the server, without a database
redis_base=${REDIS_URL:-redis://127.0.0.1:6379}
[[ $redis_base =~ ^([a-z]+://[^/]*) ]] && redis_base=${BASH_REMATCH[1]}
for tool in valgrind callgrind_control callgrind_annotate wrk; do
  command -v $tool >/dev/null || { echo "$tool is needed (apt-get install valgrind wrk)"; exit 2; }
done
[ -x "$root/.venv/bin/dexecutor" ] || make -s .venv/.installed || exit 2
body='{"userId":"w","tokenIn":"SOL","tokenOut":"USDC","amountIn":1}'
script=/tmp/dexecutor-instr-$$.lua  # the submission scenario's own wrk script
"$root/.venv/bin/python" -c "from dexecutor.bench import WRK_SCRIPT; print(WRK_SCRIPT)" >"$script"
trap 'rm -f "$script"' EXIT

measure() { # label source-dir
  local label=$1 src=$2
  local db=bench_instr_$$ port=3987 out=/tmp/dexecutor-instr-$$-${label//\//-}
  psql "$server/postgres" -qc "CREATE DATABASE $db" >/dev/null || exit 2
  redis-cli -u "$redis_base/9" flushdb >/dev/null
  local env=(env PYTHONPATH="$src/src" DATABASE_URL="$server/$db" REDIS_URL="$redis_base/9"
    RATE_LIMIT_PER_USER=0 RATE_LIMIT_PER_ADDRESS=0 MAX_QUEUE_DEPTH=1000000000
    LOG_LEVEL=warning CHAIN_PORT=8987 CHAIN_URL=http://127.0.0.1:8987)
  setsid "${env[@]}" "$root/.venv/bin/dexecutor" chain >"$out.chain.log" 2>&1 &
  local chain=$!
  for _ in $(seq 1 300); do curl -fsS -o /dev/null http://127.0.0.1:8987/health 2>/dev/null && break; sleep 0.2; done
  setsid "${env[@]}" nice -n 19 "$root/.venv/bin/dexecutor" worker >"$out.worker.log" 2>&1 &
  local worker=$!
  setsid "${env[@]}" PORT=$port valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out.%p" "$root/.venv/bin/python" "$root/.venv/bin/dexecutor" api \
    >"$out.api.log" 2>&1 &
  local api=$!
  disown -a  # stopped below with a signal: no job-control notices
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null -X POST "localhost:$port/api/orders/execute" \
      -H 'content-type: application/json' -d "$body" 2>/dev/null && break
    sleep 1
  done
  wrk -t1 -c8 -d5s -s "$script" "http://127.0.0.1:$port/api/orders/execute" >/dev/null 2>&1
  local before after
  before=$(psql -At "$server/$db" -c "select count(*) from orders")
  callgrind_control -i on >/dev/null 2>&1
  wrk -t1 -c16 -d20s -s "$script" "http://127.0.0.1:$port/api/orders/execute" >/dev/null 2>&1
  callgrind_control -i off >/dev/null 2>&1
  after=$(psql -At "$server/$db" -c "select count(*) from orders")
  callgrind_control -d >/dev/null 2>&1
  sleep 2
  kill -TERM -- -"$api" -"$worker" -"$chain" 2>/dev/null; sleep 3
  kill -KILL -- -"$api" -"$worker" -"$chain" 2>/dev/null
  local dump total
  dump=$(ls "$out".*.1 2>/dev/null | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{print $1}' | tr -d ,)
  python3 -c "import sys; n=$after-$before; print(f'$label: {n} orders, {int(\"${total:-0}\")/max(n,1)/1e6:.3f} M instructions per order')"
  rm -f "$out".*
  psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}

if [ $# -eq 0 ]; then
  measure "working-tree" "$root"
fi
for ref in "$@"; do
  tree=/tmp/dexecutor-instr-tree-$$
  git worktree add -q --detach "$tree" "$ref" || exit 2
  measure "$ref" "$tree"
  git worktree remove --force "$tree"
done
