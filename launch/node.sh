#!/bin/bash
# One node's part of a Slurm job: launch/slurm.sbatch runs it on every node through srun (one task per node) as
# `node.sh STAGE`. It starts `accelerate launch` for this node, whose rank Slurm gives the task (SLURM_NODEID).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -eq 1 ]] || ssp_die "usage: node.sh sft|rl (started by launch/slurm.sbatch)"
: "${SLURM_NODEID:?node.sh runs under srun, one task per node: submit launch/slurm.sbatch}"
: "${SSP_MASTER_ADDR:?SSP_MASTER_ADDR is not set: launch/slurm.sbatch sets it}"
: "${SSP_MASTER_PORT:?SSP_MASTER_PORT is not set: launch/slurm.sbatch sets it}"

ssp_env_setup
ssp_launch "$1" "configs/accelerate/multinode_zero$SSP_ZERO.yaml" \
    --num_machines "$SLURM_NNODES" \
    --machine_rank "$SLURM_NODEID" \
    --num_processes "$((SLURM_NNODES * SSP_GPUS_PER_NODE))" \
    --main_process_ip "$SSP_MASTER_ADDR" \
    --main_process_port "$SSP_MASTER_PORT"
