"""`accelerate launch` with 2 CPU processes and the 8-GPU ZeRO-2 config (DeepSpeed over gloo)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_spectrum_run import SMALL

from ssp.runs import release_distributed

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).parent / "accelerate"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def zero2_launch(*args: str) -> list[str]:
    """`accelerate launch` of `args` on 2 processes with the 8-GPU ZeRO-2 config (CPU processes over gloo here)."""
    config = ["--config_file", "configs/accelerate/zero2.yaml", "--num_processes", "2"]
    return [str(ACCELERATE), "launch", *config, "--main_process_port", str(free_port()), *args]


# A process-group timeout of 12 s, and probing and evaluation that take at least 24 s: every chunk of one problem is
# scored by a reward that takes a second (tests/scripts/slow_scoring.py), 2 checkpoints x 8 probing problems and
# 3 models x 8 test problems (plus greedy). The run lives because both processes take their share of the chunks;
# with the main process sampling alone the other would wait past the timeout at the next barrier.
SHORT_TIMEOUT = [
    "distributed_timeout_minutes=0.2",
    "data.probe.0.reward=slow_boxed_match",
    "data.test.0.reward=slow_boxed_match",
    "probe.sampling.batch_size=1",
    "eval.sampling.batch_size=1",
]


@pytest.mark.slow
def test_two_process_zero2_launch(tmp_path):
    out = tmp_path / "run"
    script = str(REPO / "tests" / "scripts" / "slow_scoring.py")
    command = zero2_launch(script, "sft", "recipes/demo/sft.yaml", f"output_dir={out}", *SMALL, *SHORT_TIMEOUT)
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    cost = json.loads((out / "cost.json").read_text())
    assert cost["processes"] == 2 and cost["distributed_type"] == "DEEPSPEED"
    assert yaml.safe_load((out / "recipe.yaml").read_text())["distributed_timeout_minutes"] == 0.2
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-3", "step-6"]
    # probing, selection and merging ran once, on the main process
    assert result.stdout.count("Per-subdomain pass@k of every checkpoint") == 1
    assert result.stdout.count("Selection:") == 1
    assert (out / "spectrum" / "model.safetensors").is_file()
    state = json.loads((out / "checkpoints" / "step-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    # 128 examples, 2 processes x 8 per step: 8 steps an epoch, so 6 steps are 0.75 epochs (one process: 0.375)
    assert json.loads((out / "data.json").read_text())["train"]["sft_examples"] == 128
    assert state["epoch"] == pytest.approx(0.75)


def test_release_distributed_tears_the_process_group_down(tmp_path):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )  # fmt: skip
    assert torch.distributed.is_initialized()
    release_distributed()
    assert not torch.distributed.is_initialized()
    release_distributed()  # nothing to do: no error


@pytest.mark.slow
def test_two_process_launch_without_deepspeed_forms_one_run(tmp_path, tiny_model_dir):
    """`accelerate launch --multi_gpu` on a machine without GPUs: one 2-process run over gloo (DDP), not two
    runs that each think they are the main process and write the same folder."""
    out = tmp_path / "run"
    small = ["task.train_size=16", "task.test_size=1", "rl.max_steps=2", "rl.per_device_train_batch_size=4",
             "rl.num_generations=4", "rl.max_completion_length=8", "eval.sampling.n=2", "eval.ks=[1,2]",
             "eval.sampling.max_new_tokens=8"]  # fmt: skip
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port",
               str(free_port()), "-m", "ssp", "rl", "recipes/demo/rl.yaml", f"output_dir={out}",
               f"model.name_or_path={tiny_model_dir}", *small]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    cost = json.loads((out / "cost.json").read_text())
    assert cost["processes"] == 2 and cost["distributed_type"] == "MULTI_CPU"
    assert result.stdout.count("Test split, before RL and after each stage") == 1
    log = json.loads((out / "stages" / "main" / "metrics.json").read_text())["log_history"]
    assert log[-1]["epoch"] == pytest.approx(2 * 2 * 4 / (16 * 4))  # 2 steps x 2 processes x 4 of 16 x 4
