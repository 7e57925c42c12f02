"""Several `ssp sweep` processes on one folder: each takes the next run no other holds (a flock on
OUT/claims/<run>), in the sweep's order, once its prerequisites are finished; and one sweep launched on two
processes runs each run on both."""

import json
import os
import subprocess
import sys
import time

import pytest
from test_launch import ACCELERATE, REPO, free_port
from test_sweep import LAMBDAS, read_csv, write_sweep

import ssp.sweep.run
from ssp.sweep.plan import load_sweep
from ssp.sweep.run import claim, next_run

# `ssp sweep` in a fresh process that looks again every second, not every 30, while other processes hold its runs.
SWEEP = "import sys, ssp.sweep.run as r; from ssp.cli import main; r.WAIT_SECONDS = 1; sys.exit(main(sys.argv[1:]))"
# A run's claim held by another process until it is killed.
HOLD = "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)"  # noqa: E501


def mark_finished(plan, name: str) -> None:
    run = plan.runs[name]
    plan.run_dir(name).mkdir(parents=True, exist_ok=True)
    (plan.run_dir(name) / ssp.sweep.run.FINISHED[run.stage]).write_text("")


def test_next_run_takes_the_first_run_no_other_process_holds_once_its_prerequisites_are_finished(tmp_path):
    variants = [*LAMBDAS, {"name": "no-merge", "sft": ["fusion.merge=none", "fusion.metric=pass@1"]}]
    plan = load_sweep(write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", variants, seeds=[0], baseline="mgpo"))
    sft, mgpo, grpo, reusing, reusing_rl = plan.runs  # each SFT run, then the RL runs that start from it
    assert plan.runs[reusing].trained_by == sft

    run, held, pending = next_run(plan)
    assert run.name == sft and len(pending) == 5
    # Held by this process (another open file): every other run waits for the SFT run.
    assert next_run(plan)[0] is None
    mark_finished(plan, sft)
    held.close()
    taken = []
    for _ in range(3):
        run, held, pending = next_run(plan)
        taken.append((run.name, held, len(pending)))
    assert [(name, left) for name, _, left in taken] == [(mgpo, 4), (grpo, 4), (reusing, 4)]
    assert next_run(plan)[0] is None  # the last RL run waits for the reusing SFT run, which is held
    taken[0][1].close()  # a process that stops releases its claim: the run is taken again, first in order
    assert next_run(plan)[0].name == mgpo

    # Another process's claim, released by the kernel when that process dies.
    for _, held, _ in taken[1:]:
        held.close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(plan.out / "claims" / mgpo)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        assert claim(plan, plan.runs[mgpo]) is None
        assert next_run(plan)[0].name == grpo
    finally:
        holder.kill()
        holder.wait()
    assert next_run(plan)[0].name == mgpo
    for name in (mgpo, grpo, reusing, reusing_rl):
        mark_finished(plan, name)
    assert next_run(plan) == (None, None, [])


def run_lines(stderr: str) -> list[str]:
    """The runs a sweep process ran, from its progress lines (`sweep: run 2 of 3: RL rl-... (...)`)."""
    return [line.split(": ")[2].split()[1] for line in stderr.splitlines() if line.startswith("sweep: run ")]


@pytest.mark.slow
def test_two_sweeps_on_one_folder_run_each_run_once(tmp_path):
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", LAMBDAS, seeds=[0])
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    processes = []
    for _ in range(2):
        command = [sys.executable, "-c", SWEEP, "sweep", path]
        processes.append(subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True))
        time.sleep(1)
    stderrs = [process.communicate(timeout=900)[1] for process in processes]
    for process, stderr in zip(processes, stderrs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    ran = [run_lines(stderr) for stderr in stderrs]
    plan = load_sweep(path)
    assert sorted(ran[0] + ran[1]) == sorted(plan.runs)  # every run once, by one of the two
    assert all(ran), f"one process ran everything: {ran}"
    # The SFT run was the only one to take at first: the process that did not take it waited for it.
    assert any("held by other processes or wait for runs they hold" in stderr for stderr in stderrs)
    assert len(read_csv(tmp_path / "out" / "sweep.csv")) == 2 * 4  # 2 variants x 4 models


@pytest.mark.slow
def test_a_sweep_launched_on_two_processes_runs_each_run_on_both(tmp_path):
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", LAMBDAS[:1], seeds=[0])
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port",
               str(free_port()), "-m", "ssp", "sweep", path]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = load_sweep(path)
    assert run_lines(result.stderr) == list(plan.runs)  # printed once, by the main process
    for name in plan.runs:
        cost = json.loads((plan.run_dir(name) / "cost.json").read_text())
        assert cost["processes"] == 2 and cost["distributed_type"] == "MULTI_CPU"
    assert (tmp_path / "out" / "sweep.md").is_file()
