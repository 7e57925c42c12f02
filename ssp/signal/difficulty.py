"""Offline difficulty filtering of a curriculum stage's RL prompts (`rl.difficulty_filter`), as the VibeThinker-3B
report does: before the stage trains, its initial model samples `num_generations` completions of every prompt at
the stage's sampling settings, each scored with the row's correctness reward, and the prompts solved in all or in
none of them are dropped. With the correctness reward alone their groups' rewards are all equal, so GRPO's
group-normalised advantage is zero and they would only cost rollouts (other rewards in `rl.rewards` can still vary
a little within such a group; the filter judges by correctness, as the report does).

The sampling and scoring are the evaluation's (`ssp.evaluation.evaluate.evaluate_model`), spread over the launch's
processes the same way; the counts go to OUT/stages/<name>/difficulty.json, which a rerun reuses (`result_of`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ssp.config import RecipeError, RLSection
from ssp.cost import CostMeter
from ssp.evaluation.evaluate import evaluate_model
from ssp.resume import result_of
from ssp.runs import distributed_state
from ssp.signal.curriculum import filter_sampling

COUNTS = ("prompts", "kept", "always_solved", "never_solved")


def select_rows(rows: list[dict], per_problem: dict[str, int], samples: int) -> tuple[list[dict], dict]:
    """The rows solved in some but not all of `samples` samples (`per_problem`: correct samples per row id), in
    their order, and the counts: prompts, kept, always solved and never solved, overall and per subdomain."""
    kept, domains = [], defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    for row in rows:
        correct = per_problem[row["id"]]
        outcome = "never_solved" if correct == 0 else "always_solved" if correct >= samples else "kept"
        counts = domains[row["domain"]]
        counts["prompts"] += 1
        counts[outcome] += 1
        if outcome == "kept":
            kept.append(row)
    total = {key: sum(counts[key] for counts in domains.values()) for key in COUNTS}
    return kept, {**total, "domains": dict(sorted(domains.items()))}


def difficulty_line(name: str, record: dict) -> str:
    """One line: the stage's kept and dropped prompts, then kept/prompts per subdomain."""
    domains = ", ".join(f"{domain} {c['kept']}/{c['prompts']}" for domain, c in record["domains"].items())
    return (
        f"difficulty filter, stage {name}: kept {record['kept']} of {record['prompts']} prompts, dropped "
        f"{record['always_solved']} always solved and {record['never_solved']} never solved in "
        f"{record['samples']} samples ({domains})"
    )


def filter_stage(
    recipe, key: str, name: str, rl: RLSection, rows: list[dict], model_path: str, stage_dir: Path, meter: CostMeter
) -> tuple[list[dict], dict]:
    """The rows stage `name` (recipe key `key`) trains on, and its record (difficulty.json). Every process of a
    launch calls it; each samples its share (`evaluate_model`). A record an interrupted run wrote is reused. Raises
    RecipeError when too few prompts are left to fill one generation batch (none, at worst). The record's
    `tokens_generated` are the caller's to count: the model's size is known once the stage has loaded it."""
    path = stage_dir / "difficulty.json"
    is_main_process = distributed_state().is_main_process

    def work() -> dict:
        sampling = filter_sampling(rl, recipe.eval.sampling.batch_size)
        with meter.phase(f"filter:{name}"):
            sampled = evaluate_model(model_path, rows, sampling, [1], seed=recipe.seed, name=f"filter:{name}",
                                     system_prompt=recipe.data.system_prompt, backend=recipe.eval.backend,
                                     desc=f"filter {name}")  # fmt: skip
        _, counts = select_rows(rows, sampled["per_problem"], sampling.n)
        return {"stage": name, "model": model_path, "backend": sampled["backend"], "samples": sampling.n, **counts,
                "per_problem": sampled["per_problem"], "tokens_generated": sampled["tokens_generated"]}  # fmt: skip

    record = result_of(path, work, is_main_process)
    if set(record["per_problem"]) != {row["id"] for row in rows}:
        raise RecipeError(f"{path}: counted for other prompts than stage {name}'s; delete it to filter them again")
    kept, _ = select_rows(rows, record["per_problem"], record["samples"])
    if is_main_process:
        print(difficulty_line(name, record))
    if not kept:
        raise RecipeError(
            f"{key}.difficulty_filter: stage {name} has no prompts left: of {record['prompts']}, its initial model "
            f"solved {record['always_solved']} in all {record['samples']} samples and {record['never_solved']} in "
            f"none (counts in {path}); use prompts of mixed difficulty, raise num_generations, or turn the filter off"
        )
    batch = prompts_per_generation(rl, distributed_state().num_processes)
    if len(kept) < batch:
        raise RecipeError(
            f"{key}.difficulty_filter: stage {name} keeps {len(kept)} of {record['prompts']} prompts, fewer than the "
            f"{batch} of one generation batch, so it would train no step (counts in {path}); use more prompts of "
            f"mixed difficulty or lower {key}.per_device_train_batch_size"
        )
    return kept, record


def prompts_per_generation(rl: RLSection, processes: int) -> int:
    """The prompts of one of TRL's generation batches (GRPOConfig's `generation_batch_size` over `num_generations`,
    resolved as GRPOConfig does). TRL's sampler drops an incomplete batch: a stage with fewer prompts trains no step,
    silently."""
    steps = rl.trl.get("steps_per_generation") or rl.gradient_accumulation_steps
    completions = rl.trl.get("generation_batch_size") or rl.per_device_train_batch_size * processes * steps
    return completions // rl.num_generations
