"""The multi-node path on this machine: 2 "nodes" x 1 CPU process on 127.0.0.1 over gloo. Each node runs
launch/node.sh, the script srun starts on every node of a Slurm job, with the SLURM_* variables Slurm would give
it; node.sh starts `accelerate launch --config_file configs/accelerate/multinode_zero2.yaml --num_machines 2
--machine_rank 0|1 --num_processes 2 --main_process_ip 127.0.0.1 --main_process_port P` (DeepSpeed ZeRO-2 over
gloo). Both nodes write into one folder, as cluster nodes on a shared filesystem do."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A few steps of the demo recipes on a 2-layer model, a handful of problems and 8-token samples.
SFT_ARGS = [
    "model.tiny.pretrain.steps=4",  # subprocesses do not see conftest's cap on pretraining
    "model.tiny.hidden_size=32",
    "model.tiny.num_layers=2",
    "model.tiny.num_heads=2",
    "model.tiny.intermediate_size=64",
    "task.train_size=32",
    "task.probe_size=2",
    "task.test_size=2",
    "sft.max_steps=2",
    "sft.save_every=2",
    "sft.per_device_train_batch_size=8",
    "sft.logging_steps=1",
    "probe.sampling.n=2",
    "probe.sampling.max_new_tokens=8",
    "probe.ks=[1,2]",
    "fusion.k=2",
    "eval.sampling.n=2",
    "eval.sampling.max_new_tokens=8",
    "eval.ks=[1,2]",
]
RL_ARGS = [
    "task.train_size=16",
    "task.test_size=1",
    "rl.max_steps=2",
    "rl.per_device_train_batch_size=4",
    "rl.num_generations=4",
    "rl.max_completion_length=8",
    "eval.sampling.n=2",
    "eval.sampling.max_new_tokens=8",
    "eval.ks=[1,2]",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_on_two_nodes(stage: str, env: dict, logs: Path) -> list[tuple[int, str]]:
    """Start node 0 and node 1 of `stage` at once; (exit status, output) of each. A node that fails stops the
    other, which would otherwise wait for it at the next collective."""
    port = str(free_port())
    procs, outputs = [], []
    for rank in (0, 1):
        output = logs / f"{stage}-node{rank}.log"
        node_env = {**env, "SLURM_NODEID": str(rank), "SLURM_PROCID": str(rank), "SSP_MASTER_PORT": port}
        with output.open("w") as sink:  # a file, not a pipe: a full pipe would stall a node
            command = ["bash", str(REPO / "launch" / "node.sh"), stage]
            procs.append(subprocess.Popen(command, cwd=REPO, env=node_env, stdout=sink, stderr=subprocess.STDOUT))
        outputs.append(output)
    try:
        for proc in procs:
            if proc.wait(timeout=600) != 0:
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(proc.returncode, output.read_text()) for proc, output in zip(procs, outputs, strict=True)]


@pytest.mark.slow
def test_sft_then_rl_on_two_nodes(tmp_path):
    sft_out, rl_out = tmp_path / "sft", tmp_path / "rl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSP_"))}
    env.update(
        # this interpreter's accelerate, whichever virtualenv runs the suite
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        SSP_ENV_SETUP="true",
        SLURM_NNODES="2",
        SSP_GPUS_PER_NODE="1",
        SSP_MASTER_ADDR="127.0.0.1",
        SSP_SFT_RECIPE="recipes/demo/sft.yaml",
        SSP_SFT_OUTPUT=str(sft_out),
        SSP_SFT_ARGS=" ".join(SFT_ARGS),
        SSP_RL_RECIPE="recipes/demo/rl.yaml",
        SSP_RL_OUTPUT=str(rl_out),
        SSP_RL_ARGS=" ".join(RL_ARGS),
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
    )

    sft = run_on_two_nodes("sft", env, tmp_path)
    assert [rc for rc, _ in sft] == [0, 0], sft[0][1][-3000:] + sft[1][1][-3000:]
    cost = json.loads((sft_out / "cost.json").read_text())
    assert cost["processes"] == 2 and cost["distributed_type"] == "DEEPSPEED"
    assert cost["device_count"] == 2  # two machines (CPUs count one per machine)
    assert (sft_out / "spectrum" / "model.safetensors").is_file()
    assert list(json.loads((sft_out / "eval.json").read_text())["models"]) == ["base", "best_single", "spectrum"]
    # one run of 2 processes, not two runs: the main process (node 0) selected and reported once
    assert [output.count("Selection:") for _, output in sft] == [1, 0]

    rl = run_on_two_nodes("rl", env, tmp_path)  # from the sft run folder (SSP_RL_MODEL's default)
    assert [rc for rc, _ in rl] == [0, 0], rl[0][1][-3000:] + rl[1][1][-3000:]
    cost = json.loads((rl_out / "cost.json").read_text())
    assert cost["processes"] == 2 and cost["distributed_type"] == "DEEPSPEED"
    assert cost["device_count"] == 2  # two machines (CPUs count one per machine)
    assert (rl_out / "stages" / "main" / "model" / "model.safetensors").is_file()
    assert list(json.loads((rl_out / "signal.json").read_text())["evaluations"]) == ["initial", "main"]
    assert [output.count("Test split, before RL and after each stage") for _, output in rl] == [1, 0]
