#!/usr/bin/env bash
# GRPO with the grpo_qwen3_30b_a3b preset; multi-node: set NNODES, NODE_RANK, MASTER_ADDR on each node.
#   bash examples/grpo/grpo_trainer_qwen3_30b_a3b.sh [hydra overrides]
exec env CONFIG=grpo_qwen3_30b_a3b bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" "$@"
