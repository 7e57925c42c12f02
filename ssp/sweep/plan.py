"""A sweep file resolved into runs: each (variant, seed) is an SFT recipe and an RL recipe, and equal recipes are one
run.

A run is named by its stage and a hash of its resolved recipe (every key written out, the output folder aside), so
variants whose SFT recipes resolve identically share one SFT run: an RL-only ablation trains SFT once per seed. SFT
recipes that differ only in `fusion` or `eval` train and probe alike, so such a run reuses the training of the first
one (`trained_by`; ssp.sweep.run links it in). An RL recipe names the SFT run it starts from, so RL runs are shared
only where their SFT runs are too. Every recipe is loaded and checked here, before any run starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ssp.coerce import RecipeError
from ssp.config import Recipe, SweepConfig, SweepVariant, dump_recipe, load_recipe
from ssp.demo import RECIPES, load_pipeline, scoring_settings

# Set by the sweep for every run; a variant's override of them would be silently replaced.
SET_BY_SWEEP = {"sft": ("seed", "output_dir"), "rl": ("seed", "output_dir", "model.name_or_path")}


@dataclass
class Run:
    name: str  # sft-<hash> or rl-<hash>, its folder under OUT/runs/
    stage: str  # sft or rl
    recipe: Recipe
    pairs: list[tuple[str, int]] = field(default_factory=list)  # the (variant, seed) pipelines it belongs to
    trained_by: str | None = None  # an earlier SFT run whose training and probing this one reuses


@dataclass
class SweepPlan:
    config: SweepConfig
    path: Path  # the sweep file
    out: Path
    variants: list[SweepVariant]  # every variant, includes and grid expanded, `common` applied
    baseline: str
    pipelines: dict[tuple[str, int], tuple[str, str]]  # (variant, seed) -> (SFT run, RL run)
    runs: dict[str, Run]  # in running order: each SFT run before the RL runs that start from it

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name


def recipe_hash(recipe: Recipe) -> str:
    """Ten hex digits of the recipe's YAML with its output folder taken out: equal recipes, equal hashes."""
    text = dump_recipe(dataclasses.replace(recipe, output_dir="", overwrite=False))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def training_hash(recipe: Recipe) -> str:
    """The recipe's hash with `fusion` and `eval` at their defaults: SFT runs with equal training hashes train the
    same checkpoints and probe them alike, and differ only in how they select, merge and evaluate."""
    return recipe_hash(dataclasses.replace(recipe, fusion=type(recipe.fusion)(), eval=type(recipe.eval)()))


def grid_variants(grid: dict[str, dict[str, list]]) -> list[SweepVariant]:
    """One variant per combination of the grid's values, named like `mgpo_lambda=0,paths_per_problem=1`."""
    axes = [(stage, key, values) for stage, keys in grid.items() for key, values in keys.items()]
    if not axes:
        return []
    variants = []
    for combination in itertools.product(*(values for _, _, values in axes)):
        overrides: dict[str, list[str]] = {"sft": [], "rl": []}
        names = []
        for (stage, key, _), value in zip(axes, combination, strict=True):
            text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            overrides[stage].append(f"{key}={text}")
            names.append(f"{key.rsplit('.', 1)[-1]}={text}")
        variants.append(SweepVariant(name=",".join(names), **overrides))
    return variants


def sweep_variants(config: SweepConfig, path: Path, seen: tuple[Path, ...] = ()) -> list[SweepVariant]:
    """The variants of a sweep file and of the files it includes (named `<file stem>/<name>`), `common` applied."""
    variants = [*config.variants, *grid_variants(config.grid)]
    for include in config.include:
        included = (path.parent / include).resolve()
        if included in seen or included == path.resolve():
            raise RecipeError(f"{path}: include {include}: includes itself")
        sub = load_recipe(included, schema=SweepConfig, check_files=False) if included.is_file() else None
        if sub is None:
            raise RecipeError(f"{path}: include {include}: not found ({included})")
        if (sub.sft, sub.rl) != (config.sft, config.rl):
            raise RecipeError(f"{path}: include {include}: its base recipes (sft, rl) differ from this sweep's")
        for variant in sweep_variants(sub, included, (*seen, path.resolve())):
            variants.append(dataclasses.replace(variant, name=f"{included.stem}/{variant.name}"))
    common = config.common
    return [SweepVariant(v.name, [*common.sft, *v.sft], [*common.rl, *v.rl]) for v in variants]


def check_variant(variant: SweepVariant) -> None:
    for stage, keys in SET_BY_SWEEP.items():
        for override in getattr(variant, stage):
            key = override.split("=", 1)[0].strip()
            if key in keys:
                raise RecipeError(f"variant {variant.name}: {stage}: {key} is set by the sweep (seeds, run folders)")


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepPlan:
    """The sweep file at `path` (with dotted overrides of its own keys), every recipe of every (variant, seed)
    loaded and checked: an unknown key is an error naming the variant before anything runs."""
    path = Path(path)
    config = load_recipe(path, overrides, schema=SweepConfig)
    out = Path(config.output_dir)
    variants = sweep_variants(config, path)
    if not variants:
        raise RecipeError(f"{path}: no variants (give variants, grid or include)")
    names = [variant.name for variant in variants]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise RecipeError(f"{path}: variant {duplicate!r} is named twice")
    baseline = config.baseline or names[0]
    if baseline not in names:
        raise RecipeError(f"baseline: {baseline!r} is not a variant (variants: {', '.join(names)})")
    sft_base, rl_base = Path(config.sft or RECIPES / "sft.yaml"), Path(config.rl or RECIPES / "rl.yaml")
    runs: dict[str, Run] = {}
    pipelines, tested = {}, {}
    for variant in variants:
        check_variant(variant)
    for seed in config.seeds:  # seed by seed: every variant of seed 0 is finished before seed 1 starts
        for variant in variants:
            try:
                sft, rl = load_pipeline(sft_base, rl_base, out / "runs" / "sft", out / "runs" / "rl", seed,
                                        variant.sft, variant.rl)  # fmt: skip
            except RecipeError as exc:
                raise RecipeError(f"variant {variant.name} (seed {seed}): {exc}") from None
            sft_name = f"sft-{recipe_hash(sft)}"
            sft = dataclasses.replace(sft, output_dir=str(out / "runs" / sft_name))
            # The RL recipe's hash names its SFT run, not the sweep folder: moving the folder keeps every name.
            rl = dataclasses.replace(rl, model=dataclasses.replace(rl.model, name_or_path=sft_name))
            rl_name = f"rl-{recipe_hash(rl)}"
            model = dataclasses.replace(rl.model, name_or_path=sft.output_dir)
            rl = dataclasses.replace(rl, output_dir=str(out / "runs" / rl_name), model=model)
            for name, stage, recipe in ((sft_name, "sft", sft), (rl_name, "rl", rl)):
                runs.setdefault(name, Run(name, stage, recipe)).pairs.append((variant.name, seed))
            pipelines[(variant.name, seed)] = (sft_name, rl_name)
            tested[(variant.name, seed)] = scoring_settings(sft)
    for (name, seed), settings in tested.items():
        differing = [key for key, value in settings.items() if value != tested[(baseline, seed)][key]]
        if differing:
            raise RecipeError(
                f"variant {name}: its {', '.join(differing)} differ from the baseline {baseline}'s, so their models "
                f"are not scored alike and cannot be compared; keep the test set and eval settings of the baseline"
            )
    ordered, trainings = {}, {}
    for sft_name in dict.fromkeys(sft for sft, _ in pipelines.values()):  # each SFT run, then its RL runs
        ordered[sft_name] = runs[sft_name]
        first = trainings.setdefault(training_hash(runs[sft_name].recipe), sft_name)
        runs[sft_name].trained_by = None if first == sft_name else first
        for rl_name in dict.fromkeys(rl for sft, rl in pipelines.values() if sft == sft_name):
            ordered[rl_name] = runs[rl_name]
    return SweepPlan(config, path, out, variants, baseline, pipelines, ordered)
