"""The curriculum: `rl.stages` resolved into the settings of each stage, each checked as a whole.

The signal stage resolves it once, before any work (`ssp.signal.run`); `ssp plan` and `ssp demo` resolve it to plan
and to check an RL recipe before the SFT that precedes it. Schema imports only: resolving loads nothing of the
runtime.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ssp.coerce import RecipeError, describe, from_dict
from ssp.config import RLSection, SamplingConfig
from ssp.recipe_checks import check_reward, check_source


def resolve_stages(rl: RLSection, check_files: bool = True) -> list[tuple[str, RLSection]]:
    """The curriculum as (name, settings) pairs: each stage is the `rl` section with the stage's keys replaced.

    Without `rl.stages` there is one stage named `main`. Every stage is type-checked and validated here;
    `check_files=False` skips the checks that its data files and DeepSpeed config exist.
    """
    if not rl.stages:
        check_stage(rl, "rl", check_files)
        return [("main", rl)]
    base = {f.name: getattr(rl, f.name) for f in dataclasses.fields(RLSection) if f.name != "stages"}
    base["data"] = [dataclasses.asdict(source) for source in rl.data]
    stages, names = [], set()
    for i, entry in enumerate(rl.stages):
        key = stage_key(rl, i)
        if not isinstance(entry, dict):
            raise RecipeError(
                f"{key}: a stage is a mapping of a name and the keys it overrides, got {describe(entry)}"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise RecipeError(f"{key}.name: required; letters, digits, - and _ only (it names stages/<name>/)")
        if name in names:
            raise RecipeError(f"{key}.name: {name!r} is used by an earlier stage")
        names.add(name)
        overrides = {k: v for k, v in entry.items() if k != "name"}
        for k in overrides:
            if k not in base:
                raise RecipeError(f"unknown key {key}.{k} (a stage overrides keys of rl: {', '.join(sorted(base))})")
        if isinstance(overrides.get("trl"), dict):  # TRL's fields merge: a stage sets only the ones it changes
            overrides["trl"] = {**base["trl"], **overrides["trl"]}
        merged = from_dict(RLSection, {**base, **overrides}, f"{key}.")
        check_stage(merged, key, check_files)
        stages.append((name, merged))
    return stages


def stage_key(rl: RLSection, index: int) -> str:
    """The recipe key of the stage at `index`, as errors name it: `rl.stages.<index>`, or `rl` without stages."""
    return f"rl.stages.{index}" if rl.stages else "rl"


def check_stage(rl: RLSection, key: str, check_files: bool = True) -> None:
    """One stage's settings across their keys: known rewards with weights >= 0, whole groups per step, and each
    data source's correctness reward (the one whose group accuracy p drives MGPO) among the stage's rewards."""
    for name, weight in rl.rewards.items():
        check_reward(name, f"{key}.rewards")
        if weight < 0:
            raise RecipeError(f"{key}.rewards.{name}: weight must be >= 0, got {weight}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    completions = rl.per_device_train_batch_size * rl.gradient_accumulation_steps * world
    if completions % rl.num_generations:
        raise RecipeError(
            f"{key}.per_device_train_batch_size: {completions} completions per step ({world} processes) is not a "
            f"multiple of num_generations {rl.num_generations}"
        )
    for i, source in enumerate(rl.data):
        check_source(source, f"{key}.data.{i}", check_files)
        if source.reward not in rl.rewards:
            raise RecipeError(
                f"{key}.data.{i}.reward: {source.reward!r} scores these rows' correctness (MGPO's p), so it must be "
                f"one of {key}.rewards ({', '.join(rl.rewards)})"
            )
    if check_files and rl.deepspeed and not Path(rl.deepspeed).is_file():
        raise RecipeError(f"{key}.deepspeed: file not found: {rl.deepspeed}")


def filter_sampling(rl: RLSection, batch_size: int) -> SamplingConfig:
    """The stage's rollout settings as an evaluation's: `num_generations` samples of at most
    `max_completion_length` tokens at its temperature, top_p and top_k (and `rl.trl.repetition_penalty`)."""
    return SamplingConfig(
        n=rl.num_generations,
        temperature=rl.temperature,
        top_p=rl.top_p,
        top_k=rl.top_k,
        max_new_tokens=rl.max_completion_length,
        batch_size=batch_size,
        repetition_penalty=rl.trl.get("repetition_penalty", 1.0),
    )
