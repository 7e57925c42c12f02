"""Probing and evaluation spread over a launch's processes: 1 and 2 processes give the same numbers, and the
process-group timeout is the recipe's, applied to the group however it was made."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_launch import free_port

from ssp.generation.parallel import chunk_count, chunk_seed, spread, world

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "scripts"
TORCHRUN = Path(sys.executable).parent / "torchrun"
# One thread per process in both runs: CPU matrix products may round differently with another thread count.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def torchrun(*args: str) -> list[str]:
    return [str(TORCHRUN), "--nproc_per_node", "2", "--master_port", str(free_port()), *args]


def test_spread_outside_a_launch_runs_every_chunk_in_order():
    assert world() == (0, 1)
    assert spread(5, lambda c: c * c, progress=False) == [0, 1, 4, 9, 16]
    assert chunk_count(7, 3) == 3 and chunk_count(6, 3) == 2
    assert chunk_seed(0, "probe", 1) == chunk_seed(0, "probe", 1) != chunk_seed(0, "probe", 2)


@pytest.mark.slow
def test_one_and_two_processes_give_identical_numbers(tiny_model_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    script = str(SCRIPTS / "spread_evaluation.py")
    single = subprocess.run([sys.executable, script, str(tiny_model_dir), str(one)], env=ENV, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    double = subprocess.run(torchrun(script, str(tiny_model_dir), str(two)), env=ENV, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert double.returncode == 0, double.stderr[-3000:]
    alone = json.loads((one / "rank0.json").read_text())
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert alone["processes"] == 1 and [r["processes"] for r in ranks] == [2, 2]
    for rank in ranks:  # every process gets the whole result, equal to the single process's
        assert rank["sampled"] == alone["sampled"] and rank["greedy"] == alone["greedy"]
    assert alone["sampled"]["domains"]["all"]["problems"] == 20
    assert alone["sampled"]["tokens_generated"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("timeout_minutes,passes", [(0.05, False), (1.0, True)])
def test_the_process_group_timeout_is_the_one_asked_for(timeout_minutes, passes, tmp_path):
    command = torchrun(str(SCRIPTS / "barrier_timeout.py"), str(timeout_minutes), "8", str(tmp_path))
    subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    assert rank0["processes"] == 2
    # Rank 1 is 8 s late: a 3 s timeout fails the barrier (the default of 30 minutes never would), 1 minute waits.
    assert rank0["outcome"] == "passed" if passes else rank0["outcome"].startswith("failed")
