#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): at most 8 minutes on one GPU, one JSON file.
#   bash benchmarks/gpu_check.sh [OUT.json]
# Needs the GPU profile (make install-gpu). Results go to docs/benchmarks.md with this command.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check.json}
python=${PYTHON:-.venv/bin/python}
export TOKENIZERS_PARALLELISM=false WANDB_MODE=offline HF_HUB_OFFLINE=1
timeout 480 "$python" benchmarks/gpu_check.py --out "$out" --work "${WORK:-runs/gpu-check}"
