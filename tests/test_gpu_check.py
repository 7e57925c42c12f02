"""benchmarks/gpu_check.py, the prepared GPU check, runs its code end to end on a tiny model on CPU (--small)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_writes_every_part(tmp_path):
    out = tmp_path / "check.json"
    command = [sys.executable, "benchmarks/gpu_check.py", "--small", "--out", str(out), "--work", str(tmp_path / "w")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads(out.read_text())
    parts = ["sft_256", "generate_transformers", "grpo_step"]
    if check["vllm_installed"]:
        parts += ["generate_vllm", "probe_vllm"]
    for part in parts:
        assert "error" not in check[part], (part, check[part].get("traceback"))
    sft = check["sft_256"]
    assert 0 < sft["useful_token_fraction"] <= 1 and sft["tokens_per_second"] > 0
    assert sft["peak_gib_predicted"] > 0  # the plan's number, beside the measured one on a GPU
    assert check["generate_transformers"]["tokens"] > 0 and check["grpo_step"]["tokens_generated"] > 0
