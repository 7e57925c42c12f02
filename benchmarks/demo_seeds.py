"""Does RL raise the demo's test pass@1 above the merged spectrum model's? The demo over several seeds, with a
paired bootstrap of the per-problem difference for each seed.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 0 1 2 [--runs runs/demo-seeds] [--reuse]

Runs `ssp demo --seed S --out RUNS/seed-S` for each seed (`--reuse` keeps a run folder that already holds a
summary.json), then samples the test split again with the demo's own evaluation settings and seed, which gives the
numbers of summary.json exactly (checked), per problem: the spectrum model's and the RL model's pass rates on the
same problems, their mean difference, and a bootstrap over problems (2,000 resamples) for its standard error and
95% interval. docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssp.config import load_recipe  # noqa: E402
from ssp.data.loading import load_split, user_prompt  # noqa: E402
from ssp.demo import RECIPES, run_demo  # noqa: E402
from ssp.evaluation.evaluate import score_rows  # noqa: E402
from ssp.generation.sampling import sample  # noqa: E402
from ssp.models import load_model, load_tokenizer  # noqa: E402


def per_problem_pass_rates(model_dir: Path, rows: list[dict], recipe, seed: int) -> list[float]:
    """Each problem's fraction of correct samples, sampled exactly as the demo's test evaluation samples."""
    torch.manual_seed(seed)
    prompts = [user_prompt(row["problem"], recipe.data.prompt_template, recipe.data.system_prompt) for row in rows]
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    model.eval()
    generations = sample(model, tokenizer, prompts, recipe.eval.sampling, progress=False)
    return [sum(correct) / len(correct) for correct in score_rows(rows, generations.texts)]


def paired_bootstrap(differences: list[float], resamples: int = 2000) -> tuple[float, float, float]:
    """Standard error and 95% interval of the mean difference, resampling problems."""
    rng = random.Random(0)
    means = sorted(
        sum(differences[rng.randrange(len(differences))] for _ in differences) / len(differences)
        for _ in range(resamples)
    )
    center = sum(means) / resamples
    se = (sum((m - center) ** 2 for m in means) / resamples) ** 0.5
    return se, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/demo-seeds", help="one demo run folder per seed goes here")
    parser.add_argument("--reuse", action="store_true", help="keep run folders that already hold a summary.json")
    args = parser.parse_args()
    recipe = load_recipe(RECIPES / "rl.yaml", ["model.name_or_path=tiny"])
    rows = load_split(recipe.data.test, recipe.task, "data.test")
    lines = [
        "| seed | demo s | base | best single | spectrum | RL | RL - spectrum | bootstrap SE | 95% interval |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed in args.seeds:
        out = Path(args.runs) / f"seed-{seed}"
        seconds = "reused"
        if not (args.reuse and (out / "summary.json").is_file()):
            started = time.perf_counter()
            run_demo(out, seed)
            seconds = f"{time.perf_counter() - started:.0f}"
        summary = json.loads((out / "summary.json").read_text())
        spectrum = per_problem_pass_rates(out / "sft" / "spectrum", rows, recipe, seed)
        final_stage = list(summary["signal_stages"])[-1]
        signal = per_problem_pass_rates(out / "rl" / "stages" / final_stage / "model", rows, recipe, seed)
        for name, rates in (("spectrum", spectrum), ("signal", signal)):
            if abs(sum(rates) / len(rates) - summary[name]["pass@1"]) > 1e-9:
                raise SystemExit(f"seed {seed}: re-sampled {name} pass@1 differs from summary.json; not comparable")
        differences = [b - a for a, b in zip(spectrum, signal, strict=True)]
        mean = sum(differences) / len(differences)
        se, low, high = paired_bootstrap(differences)
        lines.append(
            f"| {seed} | {seconds} | {summary['base']['pass@1']:.3f} | {summary['best_single']['pass@1']:.3f} "
            f"| {summary['spectrum']['pass@1']:.3f} | {summary['signal']['pass@1']:.3f} | {mean:+.4f} | {se:.4f} "
            f"| [{low:+.4f}, {high:+.4f}] |"
        )
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
