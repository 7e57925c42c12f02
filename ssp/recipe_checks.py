"""Checks of a loaded recipe across its keys and on the filesystem; every message names the key at fault.

A value's type and range are checked as it loads (`ssp.coerce`); what needs several keys, the reward names or the
disk is checked here. Reward names come from the registry (`ssp.rewards.REWARDS`), which imports no reward function
to list them, so checking a recipe loads nothing of the runtime.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ssp.coerce import RecipeError, check_ranges
from ssp.rewards import REWARDS, is_code

if TYPE_CHECKING:  # the schema imports this module to validate what it loads
    from ssp.config import (
        ContextConfig,
        DataSource,
        MultipathConfig,
        Recipe,
        RLSetConfig,
        SamplingConfig,
        SweepConfig,
    )


def validate(recipe: Recipe, check_files: bool = True) -> None:
    """Every section but `rl`, whose curriculum the signal stage resolves and checks (`ssp.signal.curriculum`)."""
    if not recipe.output_dir:
        raise RecipeError("output_dir: required (the run folder), e.g. output_dir=runs/my-run")
    if check_files:
        check_model_path(recipe.model.name_or_path, "model.name_or_path", allow_tiny=True, require_config=True)
    data = recipe.data
    if "{problem}" not in data.prompt_template:
        raise RecipeError("data.prompt_template: must contain {problem}")
    for split in ("train", "probe", "test"):
        sources = getattr(data, split)
        if not sources:
            raise RecipeError(f"data.{split}: at least one source is required")
        for i, source in enumerate(sources):
            check_source(source, f"data.{split}.{i}", check_files)
    _check_ks(recipe.probe.sampling, recipe.probe.ks, "probe")
    _check_ks(recipe.eval.sampling, recipe.eval.ks, "eval")
    if recipe.fusion.metric == "pass@k" and recipe.fusion.k not in recipe.probe.ks:
        raise RecipeError(f"fusion.k: {recipe.fusion.k} is not among probe.ks {recipe.probe.ks}")
    if recipe.fusion.metric == "pass@1" and 1 not in recipe.probe.ks:
        raise RecipeError(f"fusion.metric: pass@1 is probed only when probe.ks holds 1, got {recipe.probe.ks}")
    for domain, weight in recipe.fusion.weights.items():
        if weight < 0:
            raise RecipeError(f"fusion.weights.{domain}: must be >= 0, got {weight}")
    if recipe.fusion.weights and sum(recipe.fusion.weights.values()) <= 0:
        raise RecipeError("fusion.weights: at least one weight must be positive")
    if check_files and recipe.sft.deepspeed and not Path(recipe.sft.deepspeed).is_file():
        raise RecipeError(f"sft.deepspeed: file not found: {recipe.sft.deepspeed}")
    _check_context(recipe.model.context)
    for device, price in recipe.cost.prices.items():
        if price < 0:
            raise RecipeError(f"cost.prices.{device}: must be >= 0, got {price}")
    if recipe.cost.device_type != "auto" and recipe.cost.device_type not in recipe.cost.prices:
        raise RecipeError(f"cost.device_type: no price for {recipe.cost.device_type!r} in cost.prices")


def check_source(source: DataSource, key: str, check_files: bool = True) -> None:
    check_reward(source.reward, f"{key}.reward")
    if source.path == "synthetic":
        if source.split not in ("train", "probe", "test"):
            raise RecipeError(f"{key}.split: the synthetic task has train, probe and test, not {source.split!r}")
    elif source.path.startswith("benchmark:"):  # the benchmark's name and files are checked when it loads
        if check_files and source.data_dir is not None and not Path(source.data_dir).expanduser().is_dir():
            raise RecipeError(f"{key}.data_dir: folder not found: {source.data_dir}")
    elif check_files and looks_like_local_path(source.path) and not Path(source.path).expanduser().exists():
        raise RecipeError(f"{key}.path: file not found: {source.path}")
    if source.prompt_template is not None and "{problem}" not in source.prompt_template:
        raise RecipeError(f"{key}.prompt_template: must contain {{problem}}")


def check_reward(name: str, key: str) -> None:
    """`name` is in the reward registry; `key` is the recipe key that names it."""
    if name not in REWARDS:
        raise RecipeError(f"{key}: unknown reward {name!r} (known: {', '.join(REWARDS)})")


def looks_like_local_path(name_or_path: str) -> bool:
    """Hub ids are `org/name`; anything that starts like a filesystem path, or exists, is treated as local."""
    return name_or_path.startswith((".", "/", "~")) or os.path.exists(name_or_path) or name_or_path.count("/") > 1


def check_model_path(name_or_path: str, key: str, allow_tiny: bool = False, require_config: bool = False) -> None:
    """A hub id passes (it is checked when it loads); a local path must exist and, with `require_config`, be a
    model folder. `require_config=False` also accepts a folder holding only a tokenizer."""
    if (allow_tiny and name_or_path == "tiny") or not looks_like_local_path(name_or_path):
        return
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise RecipeError(f"{key}: model folder not found: {name_or_path}")
    # A spectrum run folder stands for its merged model (`ssp rl` starts from it).
    if require_config and not (path / "config.json").is_file() and not (path / "spectrum" / "config.json").is_file():
        raise RecipeError(f"{key}: {name_or_path} is not a model folder (no config.json)")


def check_sampling(sampling: SamplingConfig, where: str = "sampling") -> None:
    """Sampling values in their ranges, for settings not loaded from a recipe (presets with CLI overrides); `where`
    names the section in the error."""
    check_ranges(sampling, where)


def _check_ks(sampling: SamplingConfig, ks: list[int], section: str) -> None:
    if not ks:
        raise RecipeError(f"{section}.ks: at least one k is required")
    for k in ks:
        if not 1 <= k <= sampling.n:
            raise RecipeError(f"{section}.ks: k={k} needs 1 <= k <= {section}.sampling.n ({sampling.n})")


def _check_context(context: ContextConfig) -> None:
    if context.rope_scaling is not None and "rope_type" not in context.rope_scaling:
        raise RecipeError("model.context.rope_scaling: needs a rope_type (e.g. yarn, linear, dynamic)")


# -- the data commands' recipes (`ssp data multipath | rl`); their benchmark names are checked as the command starts,
# with the benchmark table (`ssp.data.decontaminate.check_config`)


def check_multipath(config: MultipathConfig, check_files: bool = True) -> None:
    check_output(config.output, config.overwrite)
    check_sources(config.sources, "sources")
    if config.model is not None and check_files:
        check_model_path(config.model, "model")
    if "{problem}" not in config.prompt_template:
        raise RecipeError("prompt_template: must contain {problem}")
    if config.max_tokens is not None and (config.tokenizer or config.model) is None:
        raise RecipeError("max_tokens: set tokenizer (or model) to count tokens with")
    if config.tokenizer is not None and check_files:
        check_model_path(config.tokenizer, "tokenizer")


def check_rl_set(config: RLSetConfig, check_files: bool = True) -> None:
    check_output(config.output, config.overwrite)
    check_sources(config.sources, "sources")
    if len({is_code(source.reward) for source in config.sources}) > 1:
        # `ssp rl` scores a file with one reward; code and math are separate curriculum stages.
        raise RecipeError("sources: mixes math and code rewards; write one set per kind (one file per RL stage)")


def report_path(output: str | Path) -> Path:
    """`data/sft/math.jsonl` -> `data/sft/math.report.json`."""
    return Path(output).with_suffix(".report.json")


def check_output(output: str, overwrite: bool, key: str = "output") -> None:
    """Refuse, before any work, an output that is not JSONL or that exists (unless `overwrite`)."""
    if not output:
        raise RecipeError(f"{key}: required (the JSONL file to write), e.g. {key}=data/train.jsonl")
    path = Path(output)
    if path.suffix != ".jsonl":
        raise RecipeError(f"{key}: {output} must end in .jsonl")
    for existing in (path, report_path(path)):
        if existing.exists() and not overwrite:
            raise RecipeError(f"{key}: {existing} already exists; choose another or pass overwrite=true")


def check_sources(sources: list[DataSource], key: str) -> None:
    if not sources:
        raise RecipeError(f"{key}: at least one source is required")
    for i, source in enumerate(sources):
        if source.path == "synthetic":
            raise RecipeError(f"{key}.{i}.path: a file or hub dataset is required (the synthetic task is built in)")
        check_source(source, f"{key}.{i}")
        if not is_code(source.reward) and not source.fields.answer and not source.fields.solution:
            raise RecipeError(
                f"{key}.{i}.fields: math problems need an answer: set fields.answer, or fields.solution to take "
                "the last \\boxed{} of each row's first solution"
            )


# -- `ssp sweep`: the sweep file itself; its variants' recipes are loaded and checked by `ssp.sweep.plan`

VARIANT_NAME = re.compile(r"[A-Za-z0-9._=/@+-]+")


def check_sweep(config: SweepConfig, check_files: bool = True) -> None:
    if not config.output_dir:
        raise RecipeError("output_dir: required (the sweep folder), e.g. output_dir=runs/sweep")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise RecipeError(f"seeds: a list of distinct seeds, got {config.seeds}")
    for stage in ("sft", "rl"):
        if getattr(config, stage) and check_files and not Path(getattr(config, stage)).is_file():
            raise RecipeError(f"{stage}: recipe not found: {getattr(config, stage)}")
    if config.common.name:
        raise RecipeError("common.name: common overrides apply to every variant and take no name")
    unknown = sorted(set(config.grid) - {"sft", "rl"})
    if unknown:
        raise RecipeError(f"grid.{unknown[0]}: unknown stage (a grid maps sft and rl to {{key: [values]}})")
    for stage, axes in config.grid.items():
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise RecipeError(f"grid.{stage}.{key}: a non-empty list of values")
    for i, variant in enumerate(config.variants):
        if not VARIANT_NAME.fullmatch(variant.name):
            raise RecipeError(f"variants.{i}.name: required; letters, digits and . _ = / @ + - only")
