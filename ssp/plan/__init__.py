"""`ssp plan RECIPE [key=value ...] [RECIPE [key=value ...]]`: what a run will cost and whether each stage fits on
the GPUs, before any expensive work. The formulas are in docs/plan.md; in short:

- FLOPs: 6N per trained token and 2N per generated token (N parameters, the numbers `cost.json` records), plus
  attention: 6 * layers * d_attn * L/2 per trained token of a length-L sequence, 4 * layers * d_attn * (context so
  far) per generated token.
- Time: FLOPs / (GPUs * peak * MFU), with a stated MFU for training and one for generation (decoding is bound by
  memory bandwidth, so its MFU is far lower; transformers' `generate` lower still than vLLM).
- Memory per GPU, in GiB: bf16 weights 2N, gradients 2N and Adam states 12N (fp32 master, momentum, variance),
  divided over the GPUs as the ZeRO stage says; activations of one micro-batch (with activation checkpointing:
  each layer's input plus one layer recomputed; without: every layer); TRL's chunked log-probabilities (it never
  materialises the full logits); and the KV cache of the sequences generated at once (28 KiB per token for
  Qwen2.5-1.5B), inside vLLM's fixed pool when vLLM generates.

Nothing is loaded or downloaded: the architecture comes from the model folder's config.json, the local hub cache or
`KNOWN_ARCHITECTURES`; data sizes from the recipe's local files when they exist, otherwise from stated assumptions.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

from ssp.config import RecipeError, load_recipe
from ssp.plan.formulas import DEVICES, HEADROOM_GIB, KNOWN_ARCHITECTURES, Architecture, Assumptions, find_architecture
from ssp.plan.stages import StagePlan, count_problems, plan_generation, plan_rl_stage, plan_sft
from ssp.signal.curriculum import filter_sampling, resolve_stages, stage_key
from ssp.tables import markdown_lines


def split_arguments(arguments: list[str]) -> list[tuple[str, list[str]]]:
    """`a.yaml k=v b.yaml k=v` -> [(a.yaml, [k=v]), (b.yaml, [k=v])]: overrides bind to the recipe before them."""
    groups: list[tuple[str, list[str]]] = []
    for argument in arguments:
        if "=" in argument and not argument.endswith((".yaml", ".yml")):
            if not groups:
                raise RecipeError(f"override {argument!r} comes before any recipe")
            groups[-1][1].append(argument)
        else:
            groups.append((argument, []))
    if not groups:
        raise RecipeError("ssp plan needs at least one recipe, e.g. ssp plan recipes/sft.yaml recipes/rl.yaml")
    return groups


def plan_recipes(arguments: list[str], assumptions: Assumptions, architecture: str | None = None) -> dict:
    """The plan of every recipe in `arguments`, in order; an RL recipe whose model is an earlier recipe's run
    folder is planned on that recipe's architecture."""
    if assumptions.device not in DEVICES:
        raise RecipeError(f"--device: unknown device {assumptions.device!r} (known: {', '.join(DEVICES)})")
    if assumptions.gpus < 1:
        raise RecipeError(f"--gpus: must be >= 1, got {assumptions.gpus}")
    device = DEVICES[assumptions.device]
    usable = device.memory_gib * 0.95 - HEADROOM_GIB
    outputs: dict[str, Architecture] = {}
    recipes = []
    for path, overrides in split_arguments(arguments):
        recipe = load_recipe(path, overrides, check_files=False)
        name = recipe.model.name_or_path
        arch = KNOWN_ARCHITECTURES.get(architecture) if architecture else find_architecture(name, outputs)
        if architecture and arch is None:
            arch = find_architecture(architecture, outputs)
        if arch is None:
            raise RecipeError(
                f"{path}: cannot tell the architecture of model.name_or_path {name!r} (not on disk, not in the hub "
                f"cache, not a known model; known: {', '.join(KNOWN_ARCHITECTURES)}); plan it together with the "
                f"recipe that writes it (ssp plan recipes/sft.yaml recipes/rl.yaml) or pass --architecture"
            )
        context = recipe.model.context.max_position_embeddings or arch.max_position_embeddings
        arch = dataclasses.replace(arch, max_position_embeddings=context)
        outputs[str(Path(recipe.output_dir).expanduser().resolve())] = arch
        price = recipe.cost.prices.get(device.price_key)
        if price is None:
            raise RecipeError(
                f"{path}: cost.prices has no price for {device.price_key} (--device {assumptions.device})"
            )
        stages = _plan_one(recipe, stage_of(path), arch, assumptions, usable)
        for stage in stages:
            stage.dollars = stage.device_hours * price
        recipes.append({"recipe": path, "overrides": overrides, "model": name, "parameters": arch.parameters,
                        "context": context, "price_per_device_hour": price, "stages": stages})  # fmt: skip
    hours = sum(stage.device_hours for entry in recipes for stage in entry["stages"])
    dollars = sum(stage.dollars for entry in recipes for stage in entry["stages"])
    return {
        "device": assumptions.device,
        "gpus": assumptions.gpus,
        "usable_gib_per_gpu": usable,
        "assumptions": dataclasses.asdict(assumptions),
        "recipes": recipes,
        "total": {
            "device_hours": hours,
            "dollars": dollars,
            "fits": all(stage.fits for entry in recipes for stage in entry["stages"]),
        },  # fmt: skip
        "report": {"device_hours": 3900, "device": "H800", "dollars": 7800},
    }


def stage_of(path: str) -> str:
    """`sft` or `rl`: the section the recipe file sets (a recipe is launched by one of `ssp sft` and `ssp rl`)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    sections = [name for name in ("sft", "rl") if name in raw]
    if len(sections) != 1:
        raise RecipeError(f"{path}: a recipe for ssp plan sets exactly one of the sections sft and rl")
    return sections[0]


def _plan_one(recipe, stage: str, arch: Architecture, assumptions: Assumptions, usable: float) -> list[StagePlan]:
    stages: list[StagePlan] = []
    task = recipe.task
    if stage == "sft":
        sft = plan_sft(recipe, arch, assumptions, usable)
        stages.append(sft)
        checkpoints = math.ceil(sft.steps / recipe.sft.save_every)
        probe_problems = count_problems(recipe.data.probe, task, assumptions, sft.notes, "data.probe")
        stages.append(plan_generation("probe", "probe", arch, assumptions, usable, probe_problems,
                                      recipe.probe.sampling, checkpoints, recipe.probe.backend))  # fmt: skip
        models = 3 if recipe.eval.base else 2
    else:
        curriculum = resolve_stages(recipe.rl, check_files=False)
        for index, (name, rl) in enumerate(curriculum):
            key = stage_key(recipe.rl, index)
            if rl.difficulty_filter:  # one sampling pass over the stage's prompts before it trains
                prompts = count_problems(rl.data, task, assumptions, [], f"{key}.data")
                sampling = filter_sampling(rl, recipe.eval.sampling.batch_size)
                # it samples with eval's batch size and backend, which the plan's advice names
                stages.append(plan_generation(f"filter:{name}", "eval", arch, assumptions, usable, prompts, sampling,
                                              1, recipe.eval.backend))  # fmt: skip
            stages.append(plan_rl_stage(name, key, rl, arch, assumptions, usable))
        models = len(curriculum) + (1 if recipe.eval.base else 0)
    test_problems = count_problems(recipe.data.test, task, assumptions, [], "data.test")
    evaluation = plan_generation("eval", "eval", arch, assumptions, usable, test_problems, recipe.eval.sampling,
                                 models, recipe.eval.backend)  # fmt: skip
    stages.append(evaluation)
    return stages


def plan_table(plan: dict) -> list[str]:
    rows = []
    for entry in plan["recipes"]:
        for stage in entry["stages"]:
            rows.append(
                [
                    Path(entry["recipe"]).name,
                    stage.name,
                    f"{stage.tokens_trained / 1e9:.2f}B",
                    f"{stage.tokens_generated / 1e9:.2f}B",
                    f"{(stage.train_flops + stage.generation_flops) / 1e18:.1f}",
                    f"{stage.peak_gib:.1f}",
                    "yes" if stage.fits else "NO",
                    f"{stage.device_hours:,.0f}",
                    f"{stage.dollars:,.0f}",
                ]
            )
    total = plan["total"]
    rows.append(["total", "", "", "", "", "", "yes" if total["fits"] else "NO", f"{total['device_hours']:,.0f}",
                 f"{total['dollars']:,.0f}"])  # fmt: skip
    report = plan["report"]
    rows.append(["VibeThinker report", "SFT + RL", "", "", "", "", "", f"{report['device_hours']:,} (H800)",
                 f"{report['dollars']:,}"])  # fmt: skip
    header = ["recipe", "stage", "tokens trained", "tokens generated", "EFLOPs", "peak GiB/GPU", "fits",
              "device-hours", "$"]  # fmt: skip
    return markdown_lines(header, rows)


def print_plan(plan: dict) -> None:
    a = plan["assumptions"]
    print(
        f"Plan on {plan['gpus']} x {plan['device']} ({plan['usable_gib_per_gpu']:.1f} GiB usable per GPU), ZeRO-"
        f"{a['zero_stage']}{' with optimizer offload' if a['offload_optimizer'] else ''}; MFU assumed: training "
        f"{a['train_mfu']}, generation {a['vllm_generation_mfu']} (vLLM) / {a['transformers_generation_mfu']} "
        f"(transformers); generated lengths {a['completion_fill']:.0%} of their budgets.\n"
    )
    print("\n".join(plan_table(plan)))
    for entry in plan["recipes"]:
        print(f"\n{entry['recipe']}: {entry['model']}, {entry['parameters'] / 1e9:.2f}B parameters, "
              f"context {entry['context']:,}")  # fmt: skip
        for stage in entry["stages"]:
            memory = ", ".join(f"{name} {gib:.1f}" for name, gib in stage.memory_gib.items())
            print(f"  {stage.name}: {memory} GiB per GPU")
            for note in stage.notes:
                print(f"    {note}")
            for problem in stage.problems:
                print(f"    DOES NOT FIT: {problem}")


def plan_json(plan: dict) -> dict:
    """The plan with its stages as plain dicts (for --json)."""
    out = dict(plan)
    out["recipes"] = [
        {**entry, "stages": [{**dataclasses.asdict(s), "peak_gib": s.peak_gib} for s in entry["stages"]]}
        for entry in plan["recipes"]
    ]
    return out
