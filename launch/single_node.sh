#!/bin/bash
# `ssp sft` then `ssp rl` on this machine's GPUs (8 by default), DeepSpeed ZeRO-2 unless SSP_ZERO=3. The same
# settings as launch/slurm.sbatch (docs/launch.md); run it again after an interruption and each run resumes.
#
#   bash launch/single_node.sh
#   SSP_ZERO=3 SSP_SFT_OUTPUT=runs/sft-z3 SSP_RL_OUTPUT=runs/rl-z3 bash launch/single_node.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${SSP_MASTER_PORT:=29500}"
ssp_stage_list
ssp_env_setup
for stage in "${SSP_STAGE_LIST[@]}"; do
    ssp_say "stage $stage on $SSP_GPUS_PER_NODE GPUs"
    ssp_launch "$stage" "configs/accelerate/zero$SSP_ZERO.yaml" \
        --num_processes "$SSP_GPUS_PER_NODE" --main_process_port "$SSP_MASTER_PORT"
done
