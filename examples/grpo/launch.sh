#!/usr/bin/env bash
# Launch a GRPO preset on one node or many. Run the SAME command on every node:
#   CONFIG=grpo_qwen25_32b NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash examples/grpo/launch.sh [overrides]
# Environment:
#   CONFIG            preset in configs/ (required)
#   NNODES            nodes in the job (default 1)
#   NODE_RANK         this node's rank, 0 = head (default 0)
#   MASTER_ADDR       the head node's address, as the other nodes reach it (required when
#                     NNODES > 1; 127.0.0.1 on one node)
#   JOIN_TIMEOUT_S    how long a non-head node waits for the head's Ray (default 600)
#   RAY_PORT          the head's Ray port (default 6379)
#   DEVICES_PER_NODE  ranks per node (default: the preset's resources.devices_per_node)
#   DEVICE            cpu | cuda | npu (default: the preset's resources.device)
#   PREFLIGHT=1       run the preset's layout for 2 short iterations (every phase, a save and
#                     its resume) and report time and memory per phase, instead of training
# Hosts with several network interfaces: set GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME (GPU)
# or HCCL_IF_IP (NPU) to the interface / address the nodes reach each other on. Every node
# needs the repository, .venv, the checkpoint and the data at the same paths (a shared file
# system, or copies), and the head writes the run's output.
# The head starts Ray, waits until all NNODES nodes have joined, then trains; the other
# nodes join and wait until the head's Ray stops. Ray's token authentication needs the same
# token on every node: export RAY_AUTH_TOKEN=... (or RAY_AUTH_MODE=disabled on a private net).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
: "${CONFIG:?set CONFIG to a preset in configs/, e.g. CONFIG=grpo_qwen25_7b}"
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
if ! [[ "$NNODES" =~ ^[1-9][0-9]*$ ]] || ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || [ "$NODE_RANK" -ge "$NNODES" ]; then
  echo "launch: NNODES=$NNODES NODE_RANK=$NODE_RANK: NNODES must be >= 1 and NODE_RANK in 0..NNODES-1" >&2
  exit 2
fi
if [ "$NNODES" -gt 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
  echo "launch: NNODES=$NNODES needs MASTER_ADDR=<the head node's address, as the other nodes reach it>, the same on every node" >&2
  exit 2
fi
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
RAY_PORT=${RAY_PORT:-6379}
python="${PYTHON:-python}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && python=.venv/bin/python
ray_bin="$(dirname "$python")/ray"
command -v "$ray_bin" >/dev/null 2>&1 || ray_bin=ray

mode=()
[ "${PREFLIGHT:-0}" = 1 ] && mode=(--preflight)
overrides=("resources.nnodes=$NNODES")
[ -n "${DEVICES_PER_NODE:-}" ] && overrides+=("resources.devices_per_node=$DEVICES_PER_NODE")
[ -n "${DEVICE:-}" ] && overrides+=("resources.device=$DEVICE")

# Fail fast, on every node, on a config that cannot work.
"$python" cli/train_grpo.py --config-name "$CONFIG" --check "${overrides[@]}" "$@"

resources=()
case "${DEVICE:-}" in
  cuda) resources=(--num-gpus "${DEVICES_PER_NODE:-8}") ;;
  npu) resources=(--resources "{\"NPU\": ${DEVICES_PER_NODE:-8}}") ;;
esac

if [ "$NNODES" = 1 ]; then
  exec "$python" cli/train_grpo.py --config-name "$CONFIG" "${mode[@]}" "${overrides[@]}" "$@"
fi

if [ "$NODE_RANK" = 0 ]; then
  "$ray_bin" start --head --port "$RAY_PORT" --node-ip-address "$MASTER_ADDR" \
    --include-dashboard=false "${resources[@]}"
  trap '"$ray_bin" stop --force >/dev/null 2>&1 || true' EXIT
  echo "launch: waiting for $NNODES nodes to join $MASTER_ADDR:$RAY_PORT"
  "$python" - "$NNODES" <<'PY'
import sys, time
import ray
want = int(sys.argv[1])
ray.init(address="auto", logging_level="ERROR")
deadline = time.time() + 600
while (alive := sum(n["Alive"] for n in ray.nodes())) < want:
    if time.time() > deadline:
        sys.exit(f"launch: only {alive}/{want} nodes joined within 10 minutes")
    time.sleep(2)
print(f"launch: {alive} nodes up")
PY
  "$python" cli/train_grpo.py --config-name "$CONFIG" "${mode[@]}" resources.ray_address=auto \
    "${overrides[@]}" "$@"
else
  # The head may still be starting: wait (bounded) until its Ray port answers, then join and
  # stay until the head's cluster goes away.
  "$python" - "$MASTER_ADDR" "$RAY_PORT" "${JOIN_TIMEOUT_S:-600}" <<'PY'
import socket, sys, time
host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + limit
while True:
    try:
        socket.create_connection((host, port), timeout=5).close()
        break
    except OSError as err:
        if time.time() > deadline:
            sys.exit(f"launch: the head {host}:{port} did not answer within {limit:.0f} s "
                     f"({err}); start NODE_RANK=0 there, or check MASTER_ADDR / RAY_PORT")
        time.sleep(3)
PY
  "$ray_bin" start --address "$MASTER_ADDR:$RAY_PORT" "${resources[@]}" --block
fi
