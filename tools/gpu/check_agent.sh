#!/usr/bin/env bash
# A small real campaign per GPU path on this host: a coordinator and one agent on loopback,
# then for each path a campaign of a few random subnets at the chosen batch, and what the
# agent measured (latency, the GPU's name, clocks and temperature before and after).
#
#   tools/gpu/check_agent.sh [PATH ...]
#
# PATH is RUNTIME:PROVIDER:PRECISION (PROVIDER may hold a colon: torch:cuda:1:fp16).
# Default: every GPU path the agent has, i.e.
#   onnxruntime:CUDAExecutionProvider:fp32  onnxruntime:CUDAExecutionProvider:fp16
#   onnxruntime:TensorrtExecutionProvider:fp16  torch:cuda:fp32  torch:cuda:fp16
# Environment: PY (a Python with the project's coordinator extra and the GPU build of
# onnxruntime; default .venv/bin/python), BATCH (64), RESOLUTION (224), SUBNETS (3),
# MAX_TIME (seconds of timed runs per subnet at most, 10), WAIT (seconds a path's campaign
# may take, 1800: TensorRT builds an engine per subnet), KEEP (a new or empty folder to keep
# the database and logs in; default a temporary one, removed).
#
# Each path prints its measurements or why it failed; the exit status is 1 when any path
# failed, 0 when all measured. The tests run it on the CPU equivalents
# (onnxruntime:CPUExecutionProvider:fp32 torch:cpu:fp16).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
BATCH=${BATCH:-64}
RESOLUTION=${RESOLUTION:-224}
SUBNETS=${SUBNETS:-3}
MAX_TIME=${MAX_TIME:-10}
WAIT=${WAIT:-1800}
LABEL=gpu-check
if [ $# -eq 0 ]; then
  set -- onnxruntime:CUDAExecutionProvider:fp32 onnxruntime:CUDAExecutionProvider:fp16 \
    onnxruntime:TensorrtExecutionProvider:fp16 torch:cuda:fp32 torch:cuda:fp16
fi

if [ -n "${KEEP:-}" ]; then
  if [ -e "$KEEP" ] && [ -n "$(ls -A "$KEEP")" ]; then
    echo "KEEP=$KEEP is not empty: name a new or empty folder" >&2
    exit 2
  fi
  mkdir -p "$KEEP"
  WORK=$(cd "$KEEP" && pwd)
else
  WORK=$(mktemp -d)
fi
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$ROOT"
coord() { "$PY" -m coordinator "$@"; }
alive() {  # alive NAME PID: fail, with the logs, when the process has ended
  kill -0 "$2" 2>/dev/null && return 0
  echo "the $1 has stopped; logs:" >&2
  tail -n 20 "$WORK"/*.log >&2 || true
  exit 1
}
wait_for() {  # wait_for SECONDS WHAT PID COMMAND...: poll until the command succeeds
  local deadline=$((SECONDS + $1)) what=$2 pid=$3
  shift 3
  until "$@" 2>/dev/null; do
    alive "$what" "$pid"
    if [ $SECONDS -ge $deadline ]; then
      echo "gave up waiting for $what; logs:" >&2
      tail -n 20 "$WORK"/*.log >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

echo "== coordinator"
"$PY" -m coordinator serve --db "$WORK/fleet.db" --listen 127.0.0.1:0 \
  >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER=$!
PIDS+=("$SERVER")
wait_for 60 "coordinator" "$SERVER" grep -q "^listening on " "$WORK/serve.out"
ADDRESS=$(awk '/^listening on /{print $3; exit}' "$WORK/serve.out")
echo "   listening on $ADDRESS"

echo "== agent"
coord token create --db "$WORK/fleet.db" --name "$LABEL" --label "$LABEL" \
  --out "$WORK/agent.token" >/dev/null
"$PY" -m agent run --coordinator "$ADDRESS" --token-file "$WORK/agent.token" \
  --cache-dir "$WORK/agent-cache" --label "$LABEL" --allow-torch >"$WORK/agent.log" 2>&1 &
AGENT=$!
PIDS+=("$AGENT")
wait_for 120 "agent" "$AGENT" test -s "$WORK/agent-cache/agent-id"
"$PY" -m agent info | "$PY" tools/gpu/summary.py device

failed=0
for path in "$@"; do
  runtime=${path%%:*} rest=${path#*:}
  provider=${rest%:*} precision=${rest##*:}
  alive coordinator "$SERVER"
  alive agent "$AGENT"
  echo "== $runtime on $provider, $precision, batch $BATCH, $RESOLUTION px, $SUBNETS subnets"
  if ! created=$(coord campaign create --db "$WORK/fleet.db" --name "$path" --label "$LABEL" \
    --workload random --count "$SUBNETS" --resolutions "$RESOLUTION" --batch "$BATCH" \
    --runtime "$runtime" --provider "$provider" --precision "$precision" \
    --repeats 1 --reference-every 0 --max-attempts 1 --min-time 1 --max-time "$MAX_TIME" \
    --start 2>&1); then
    echo "   refused: $created"
    failed=1
    continue
  fi
  campaign=$(sed -n 's/.*campaign \([0-9a-f]\{6,\}\).*/\1/p' <<<"$created" | head -n 1)
  if ! coord campaign wait --db "$WORK/fleet.db" "$campaign" --interval 2 --timeout "$WAIT" \
    >/dev/null 2>&1; then
    echo "   not every job ended done within ${WAIT} s (failed, or timed out and cancelled)"
    coord campaign cancel --db "$WORK/fleet.db" "$campaign" >/dev/null 2>&1 || true
    failed=1
  fi
  coord results export --db "$WORK/fleet.db" --campaign "$campaign" --format jsonl |
    "$PY" tools/gpu/summary.py results || failed=1
done
exit $failed
