"""MGPO weights for a group split across 2 processes (2 CPU processes under the ZeRO-2 launch config)."""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from test_launch import zero2_launch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_group_straddling_two_processes_gets_its_whole_group_weight(tiny_model_dir, tmp_path):
    command = zero2_launch("tests/scripts/mgpo_two_process.py", str(tiny_model_dir), str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2]
    correctness = torch.tensor(ranks[0]["gathered_correctness"])
    assert correctness.tolist() == ranks[1]["gathered_correctness"]  # both ranks see all 12 completions
    assert correctness.numel() == 12 and all(len(r["local_advantages"]) == 6 for r in ranks)

    groups = correctness.view(3, 4)  # group 1 = completions 4..7: two on rank 0, two on rank 1
    assert groups.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    p = groups.mean(dim=1)
    deviation = [sum(x * math.log(2 * x) for x in (q, 1 - q) if x > 0) for q in p.tolist()]
    weights = torch.tensor([math.exp(-1.5 * d) for d in deviation])
    std = groups.std(dim=1, keepdim=True)
    expected = (((groups - groups.mean(dim=1, keepdim=True)) / (std + 1e-4)) * weights[:, None]).flatten()
    got = torch.tensor(ranks[0]["local_advantages"] + ranks[1]["local_advantages"])
    assert torch.allclose(got, expected, atol=1e-5)
    # the straddling group has p = 0.5, weight 1; weighting each rank's half alone (p = 1 and p = 0) would give 2^-1.5
    assert weights[1] == 1.0
    assert got[4:8].abs().tolist() == pytest.approx([0.5 / (0.57735 + 1e-4)] * 4, rel=1e-4)
