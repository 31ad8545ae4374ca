#!/usr/bin/env bash
# GRPO with the grpo_smollm2_cpu preset; multi-node: set NNODES, NODE_RANK, MASTER_ADDR on each node.
#   bash examples/grpo/grpo_trainer_smollm2_cpu.sh [hydra overrides]
exec env CONFIG=grpo_smollm2_cpu bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" "$@"
