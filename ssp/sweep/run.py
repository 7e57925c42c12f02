"""`ssp sweep SWEEP.yaml`: every run of a sweep, one after another, then its tables and plots (docs/ablations.md).

A finished run (its last file written) is skipped, an unfinished one resumes where it stopped (`ssp.resume`): a rerun
of a finished sweep only collects. An SFT run that differs from an earlier one only in `fusion` or `eval` starts from
that run's training and probing, linked in, and only selects, merges and evaluates. With `--slurm` the sweep writes
one Slurm array of its SFT runs and one of its RL runs (launch/sweep_array.sbatch), the second waiting for the
first, instead of running anything. Several `ssp sweep` processes on one folder (two nodes sharing a file system, or
two on one machine) share its runs: each takes the next run no other holds (`claim`).
"""

from __future__ import annotations

import fcntl
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import IO

from accelerate.utils import broadcast_object_list

from ssp.coerce import RecipeError
from ssp.config import dump_recipe
from ssp.cost import device_cost
from ssp.files import read_json, staged_dir, write_json, write_text
from ssp.resume import link_or_copy
from ssp.runs import distributed_state
from ssp.signal.run import run_signal
from ssp.spectrum.run import run_spectrum
from ssp.sweep.plan import Run, SweepPlan
from ssp.sweep.report import write_sweep_report

# The file each stage writes last: the run is finished when it exists.
FINISHED = {"sft": "spectrum_report.md", "rl": "signal.json"}
WAIT_SECONDS = 30  # how often a process with nothing to take looks again at the runs other processes hold


def finished(plan: SweepPlan, run: Run) -> bool:
    return (plan.run_dir(run.name) / FINISHED[run.stage]).is_file()


def unfinished(plan: SweepPlan) -> list[Run]:
    return [run for run in plan.runs.values() if not finished(plan, run)]


def share_training(plan: SweepPlan, run: Run) -> None:
    """Start `run`'s folder from the finished training of `run.trained_by`: its base and checkpoints (hard links),
    its probe results and training records (copies), this run's recipe, and a time ledger holding that training's
    and probing's time, so the run's cost is its pipeline's as if it ran alone; `shared_training.json` says how much
    of it the sweep's total must not count twice. Nothing happens to a run already started, or while the other run
    is unfinished (Slurm arrays run both at once: then each trains)."""
    source, target = plan.run_dir(run.trained_by), plan.run_dir(run.name)
    if target.exists() or not finished(plan, plan.runs[run.trained_by]):
        return
    cost = read_json(source / "cost.json")
    phases = {phase: cost["phases_seconds"][phase] for phase in ("train", "probe") if phase in cost["phases_seconds"]}
    seconds = round(sum(phases.values()), 3)
    device_hours, dollars = device_cost(seconds, cost["device_count"], cost["price_per_device_hour"])
    with staged_dir(target) as staging:  # a seeding cut short leaves no half folder under the run's name
        for weights in (source / "base", *(source / "checkpoints").glob("step-*")):  # read only: hard links
            link_or_copy(weights, staging / weights.relative_to(source))
        shutil.copytree(source / "probe", staging / "probe")  # records the run may rewrite: copies
        for record in ("train.json", "data.json"):
            shutil.copy2(source / record, staging / record)
        write_json(staging / "cost.json", {"wall_seconds": seconds, "phases_seconds": phases, "attempts": 0,
                                           "complete": False})  # fmt: skip
        shared = {"from": run.trained_by, "wall_seconds": seconds, "device_hours": device_hours, "dollars": dollars}
        write_json(staging / "shared_training.json", shared)
        write_text(staging / "recipe.yaml", dump_recipe(run.recipe))


def prerequisites(plan: SweepPlan, run: Run) -> list[str]:
    """The runs `run` starts from: an RL run's SFT run, a reusing SFT run's training."""
    if run.stage == "rl":
        return [next(sft for sft, rl in plan.pipelines.values() if rl == run.name)]
    return [run.trained_by] if run.trained_by else []


def claim(plan: SweepPlan, run: Run) -> IO | None:
    """`run` taken for this process: an exclusive flock on OUT/claims/<run>, held until the file is closed and
    released by the kernel when the process dies, so a crashed process leaves nothing to clean up. None when another
    process holds it. flock works across hosts on NFS; Lustre needs its `flock` mount option."""
    path = plan.out / "claims" / run.name
    path.parent.mkdir(parents=True, exist_ok=True)
    held = open(path, "a")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        return None
    return held


def next_run(plan: SweepPlan) -> tuple[Run | None, IO | None, list[Run]]:
    """The unfinished runs, and the first of them, in the sweep's order, whose prerequisites are finished and that no
    other process holds, claimed (None while the runs left are held by others or wait for runs they hold)."""
    pending = unfinished(plan)
    for run in pending:
        if not all(finished(plan, plan.runs[name]) for name in prerequisites(plan, run)):
            continue
        held = claim(plan, run)
        if held is None:
            continue
        if not finished(plan, run):  # another process may have finished it since `pending` was read
            return run, held, pending
        held.close()
    return None, None, pending


def check_sweep_folder(out: Path) -> None:
    """A folder that holds files but no sweep is refused: the sweep writes runs/, recipes/ and its reports there.
    A folder holding only `runs/` is taken: a link to another sweep's runs collects a subset of its variants."""
    if not out.exists():
        return
    entries = [entry.name for entry in out.iterdir()] if out.is_dir() else None
    if entries is None or (entries not in ([], ["runs"]) and not (out / "sweep.yaml").is_file()):
        raise RecipeError(f"output_dir: {out} holds files that are not an ssp sweep; choose another folder")


def describe_plan(plan: SweepPlan, todo: list[Run]) -> str:
    stages = {stage: [run for run in plan.runs.values() if run.stage == stage] for stage in ("sft", "rl")}
    pipelines = len(plan.pipelines)
    reusing = sum(run.trained_by is not None for run in stages["sft"])
    return (
        f"sweep {plan.path}: {len(plan.variants)} variants x {len(plan.config.seeds)} seeds = {pipelines} pipelines; "
        f"{len(stages['sft'])} SFT runs ({reusing} reusing another's training) and {len(stages['rl'])} RL runs "
        f"(sharing saves {2 * pipelines - len(plan.runs)}); {len(todo)} to run, {len(plan.runs) - len(todo)} finished"
    )


def time_left(durations: dict[str, list[float]], remaining: list[Run]) -> str:
    """The remaining runs at the mean duration of the finished runs of their stage (of any stage when none)."""
    every = [seconds for stage in durations.values() for seconds in stage]
    if not every:
        return "time left unknown until a run finishes"
    seconds = sum(sum(durations[r.stage]) / len(durations[r.stage]) if durations[r.stage] else sum(every) / len(every)
                  for r in remaining)  # fmt: skip
    return f"about {minutes(seconds)} left"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def progress_line(index: int, left: list[Run], run: Run, started: float, durations: dict[str, list[float]]) -> str:
    """`left`: the unfinished runs, this one among them (of which other processes may be running some)."""
    pairs = ", ".join(f"{variant} seed {seed}" for variant, seed in run.pairs)
    elapsed = minutes(time.perf_counter() - started)
    return (
        f"sweep: run {index} of {index - 1 + len(left)}: {run.stage.upper()} {run.name} ({pairs}); {elapsed} "
        f"elapsed, {time_left(durations, left)}"
    )


def write_recipes(plan: SweepPlan) -> None:
    """OUT/sweep.yaml (the sweep as loaded) and OUT/recipes/<run>.yaml, each run's resolved recipe."""
    write_text(plan.out / "sweep.yaml", dump_recipe(plan.config))
    for run in plan.runs.values():
        write_text(plan.out / "recipes" / f"{run.name}.yaml", dump_recipe(run.recipe))


def slurm_tasks(plan: SweepPlan, todo: list[Run]) -> dict[str, list[str]]:
    """Per stage, one line of launch/common.sh settings per unfinished run (launch/sweep_array.sbatch reads them)."""
    tasks: dict[str, list[str]] = {"sft": [], "rl": []}
    for run in todo:
        recipe = (plan.out / "recipes" / f"{run.name}.yaml").resolve()
        output = plan.run_dir(run.name).resolve()
        settings = {"SSP_STAGES": run.stage, f"SSP_{run.stage.upper()}_RECIPE": recipe,
                    f"SSP_{run.stage.upper()}_OUTPUT": output}  # fmt: skip
        if run.stage == "rl":
            settings["SSP_RL_MODEL"] = Path(run.recipe.model.name_or_path).resolve()
        for value in map(str, settings.values()):
            if any(character.isspace() for character in value):  # the settings are split at whitespace
                raise RecipeError(f"output_dir: {value} holds whitespace, which Slurm task settings cannot")
        tasks[run.stage].append(" ".join(f"{key}={value}" for key, value in settings.items()))
    return tasks


def write_slurm(plan: SweepPlan, todo: list[Run], sweep_args: list[str]) -> Path:
    """OUT/slurm/{sft,rl}.tasks and OUT/slurm/submit.sh, which submits them as two arrays and collects after."""
    tasks = slurm_tasks(plan, todo)
    slurm = plan.out / "slurm"
    lines = [
        "#!/bin/bash",
        "# Written by `ssp sweep --slurm`; run it from the repository root. sbatch flags for every job (partition,",
        '# account, nodes, time) come from SBATCH_* variables or the arguments ("$@").',
        "set -euo pipefail",
    ]
    dependency = ""
    for stage in ("sft", "rl"):
        if tasks[stage]:
            task_file = write_text(slurm / f"{stage}.tasks", "\n".join(tasks[stage]) + "\n").resolve()
            array = f"--array=0-{len(tasks[stage]) - 1}"
            lines.append(f'{stage}=$(sbatch --parsable --job-name=ssp-sweep-{stage} {array} {dependency}"$@" '
                         f"launch/sweep_array.sbatch {shlex.quote(str(task_file))})")  # fmt: skip
            dependency = f"--dependency=afterok:${stage} "
    collect = shlex.join([sys.executable, "-m", "ssp", "sweep", *sweep_args, "--collect"])
    lines.append(f'sbatch {dependency}"$@" --job-name=ssp-sweep-collect --ntasks=1 --wrap {shlex.quote(collect)}')
    path = write_text(slurm / "submit.sh", "\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


def run_sweep(plan: SweepPlan, slurm: bool = False, collect_only: bool = False, sweep_args: list[str] = ()) -> dict:
    """Run what is unfinished (or write the Slurm arrays), then collect sweep.md, sweep.csv and the plots."""
    state = distributed_state()
    main = state.is_main_process
    check_sweep_folder(plan.out)
    todo = unfinished(plan)
    state.wait_for_everyone()  # every process has looked at the folder before the main one writes to it
    if main:
        write_recipes(plan)
        print(describe_plan(plan, todo), file=sys.stderr)
    state.wait_for_everyone()
    if slurm:
        if main and todo:
            print(f"sweep: submit with `bash {write_slurm(plan, todo, list(sweep_args))}`", file=sys.stderr)
        return {}
    if collect_only and todo:
        names = ", ".join(run.name for run in todo[:3]) + (", ..." if len(todo) > 3 else "")
        raise RecipeError(f"--collect: {len(todo)} runs are not finished ({names}); run the sweep without --collect")
    started, durations, index, waiting = time.perf_counter(), {"sft": [], "rl": []}, 0, False
    while True:
        # The main process claims the next run and tells the launch's other processes, which run it with it.
        run, held, pending = next_run(plan) if main else (None, None, [])
        decision = [run.name if run else None, len(pending)]
        if state.num_processes > 1:
            decision = broadcast_object_list(decision)
        name, left = decision
        if not left:
            break
        if name is None:
            if main and not waiting:
                print(f"sweep: the {left} runs left are held by other processes or wait for runs they hold; "
                      f"looking again every {WAIT_SECONDS} s", file=sys.stderr, flush=True)  # fmt: skip
            waiting = True
            time.sleep(WAIT_SECONDS)
            continue
        run, index, waiting = plan.runs[name], index + 1, False
        if main:
            print(progress_line(index, pending, run, started, durations), file=sys.stderr, flush=True)
        run_started = time.perf_counter()
        try:
            if run.trained_by is not None:
                if main:
                    share_training(plan, run)
                state.wait_for_everyone()
            (run_spectrum if run.stage == "sft" else run_signal)(run.recipe)
        finally:
            if held is not None:
                held.close()
        durations[run.stage].append(time.perf_counter() - run_started)
    if not main:
        return {}
    return write_sweep_report(plan)


def dry_run(plan: SweepPlan) -> str:
    """What the sweep would run, a line per pipeline, and the sharing (`ssp sweep --dry-run`)."""
    todo = unfinished(plan)
    lines = [describe_plan(plan, todo)]
    for (variant, seed), (sft, rl) in plan.pipelines.items():
        state = {name: "finished" if finished(plan, plan.runs[name]) else "to run" for name in (sft, rl)}
        lines.append(f"  {variant} seed {seed}: {sft} ({state[sft]}) -> {rl} ({state[rl]})")
    return "\n".join(lines)
