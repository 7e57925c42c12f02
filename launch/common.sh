# shellcheck shell=bash
# What launch/slurm.sbatch, launch/node.sh and launch/single_node.sh share: the settings (environment variables,
# each with a default; docs/launch.md lists them), the dry run, and the one function that starts a stage with
# `accelerate launch`. Sourced by those scripts, never run by itself.

# The checkout to run from: the accelerate configs name the DeepSpeed files relative to it.
: "${SSP_REPO:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${SSP_STAGES:=sft rl}"
: "${SSP_SFT_RECIPE:=recipes/sft.yaml}"
: "${SSP_RL_RECIPE:=recipes/rl.yaml}"
: "${SSP_SFT_OUTPUT:=runs/sft}"
: "${SSP_RL_OUTPUT:=runs/rl}"
# The rl stage starts from the sft stage's run folder (its merged spectrum/ model); set it empty for the recipe's own.
: "${SSP_RL_MODEL=$SSP_SFT_OUTPUT}"
: "${SSP_SFT_ARGS:=}"
: "${SSP_RL_ARGS:=}"
: "${SSP_ZERO:=2}"
: "${SSP_ACCELERATE_CONFIG:=}"
: "${SSP_ACCELERATE_ARGS:=}"
# Slurm writes --gpus-per-node as "8" or "h100:8".
: "${SSP_GPUS_PER_NODE:=${SLURM_GPUS_PER_NODE:-8}}"
SSP_GPUS_PER_NODE=${SSP_GPUS_PER_NODE##*:}
: "${SSP_ENV_SETUP:=}"
: "${SSP_SRUN_ARGS:=}"
: "${SSP_CONTAINER:=}"
: "${SSP_LAUNCH_DRY_RUN:=0}"
# srun hands the batch step's environment to every node's task: the nodes see the same settings.
export SSP_REPO SSP_STAGES SSP_SFT_RECIPE SSP_RL_RECIPE SSP_SFT_OUTPUT SSP_RL_OUTPUT SSP_RL_MODEL SSP_SFT_ARGS \
    SSP_RL_ARGS SSP_ZERO SSP_ACCELERATE_CONFIG SSP_ACCELERATE_ARGS SSP_GPUS_PER_NODE SSP_ENV_SETUP SSP_SRUN_ARGS \
    SSP_CONTAINER SSP_LAUNCH_DRY_RUN

ssp_say() {
    echo "ssp-launch: $*" >&2
}

ssp_die() {
    ssp_say "error: $*"
    exit 2
}

# Run a command, or with SSP_LAUNCH_DRY_RUN=1 print it (shell-quoted, after "+ ") instead.
ssp_run() {
    if [[ $SSP_LAUNCH_DRY_RUN == 1 ]]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# The stages to run, in order, into SSP_STAGE_LIST. Settings that hold several words (SSP_STAGES, SSP_*_ARGS,
# SSP_SRUN_ARGS, SSP_CONTAINER) are split at whitespace: a word cannot hold a space.
ssp_stage_list() {
    local stage
    read -r -a SSP_STAGE_LIST <<<"$SSP_STAGES"
    for stage in "${SSP_STAGE_LIST[@]}"; do
        [[ $stage == sft || $stage == rl ]] || ssp_die "SSP_STAGES: unknown stage '$stage' (known: sft rl)"
    done
}

# Activate the software environment on this node: SSP_ENV_SETUP (a shell command, e.g. "module load cuda &&
# source ~/venvs/ssp/bin/activate"), else the checkout's .venv when there is one, else whatever is on PATH.
ssp_env_setup() {
    if [[ -n $SSP_ENV_SETUP ]]; then
        if [[ $SSP_LAUNCH_DRY_RUN == 1 ]]; then
            ssp_run eval "$SSP_ENV_SETUP"
        else
            eval "$SSP_ENV_SETUP"
        fi
    elif [[ -f $SSP_REPO/.venv/bin/activate ]]; then
        if [[ $SSP_LAUNCH_DRY_RUN == 1 ]]; then
            ssp_run source "$SSP_REPO/.venv/bin/activate"
        else
            # shellcheck disable=SC1091  # the user's virtualenv, not part of this repository
            source "$SSP_REPO/.venv/bin/activate"
        fi
    fi
}

# The `ssp` arguments of one stage, into SSP_STAGE_ARGS.
ssp_stage_args() {
    local extra=()
    case $1 in
    sft)
        SSP_STAGE_ARGS=(sft "$SSP_SFT_RECIPE" "output_dir=$SSP_SFT_OUTPUT")
        read -r -a extra <<<"$SSP_SFT_ARGS"
        ;;
    rl)
        SSP_STAGE_ARGS=(rl "$SSP_RL_RECIPE" "output_dir=$SSP_RL_OUTPUT")
        if [[ -n $SSP_RL_MODEL ]]; then
            SSP_STAGE_ARGS+=("model.name_or_path=$SSP_RL_MODEL")
        fi
        read -r -a extra <<<"$SSP_RL_ARGS"
        ;;
    *) ssp_die "unknown stage '$1' (known: sft rl)" ;;
    esac
    SSP_STAGE_ARGS+=("${extra[@]}")
}

# Start one stage on this node: ssp_launch STAGE DEFAULT_CONFIG [ACCELERATE_FLAG ...]. Rerunning a stage on the same
# output folder resumes it, and a finished stage only checks that its results are there (the resume rule).
ssp_launch() {
    local stage=$1 config=${SSP_ACCELERATE_CONFIG:-$2}
    shift 2
    local accelerate_args=()
    [[ $SSP_ZERO == 2 || $SSP_ZERO == 3 ]] || ssp_die "SSP_ZERO: must be 2 or 3, got '$SSP_ZERO'"
    ssp_stage_args "$stage"
    read -r -a accelerate_args <<<"$SSP_ACCELERATE_ARGS"
    cd "$SSP_REPO" || ssp_die "SSP_REPO: cannot enter $SSP_REPO"
    [[ -f $config ]] || ssp_die "accelerate config not found: $config (relative to SSP_REPO=$SSP_REPO)"
    ssp_run accelerate launch --config_file "$config" "$@" "${accelerate_args[@]}" -m ssp "${SSP_STAGE_ARGS[@]}"
}
