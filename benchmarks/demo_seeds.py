"""Does RL raise the demo's test pass@1 above the merged spectrum model's? The demo over several seeds, with a
paired bootstrap of the per-problem difference for each seed.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 0 1 2 [--runs runs/demo-seeds] [--reuse]

Runs `ssp demo --seed S --out RUNS/seed-S` for each seed (`--reuse` keeps a run folder that already holds a
summary.json), then reads from the runs' eval.json files the correct samples of every test problem (`per_problem`):
the spectrum model's and the RL model's pass rates on the same problems, their mean difference, and a bootstrap
over problems (2,000 resamples, `ssp.sweep.stats.paired_bootstrap`) for its standard error and 95% interval.
docs/benchmarks.md records a run; `ssp sweep` (docs/ablations.md) measures any variant this way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssp.demo import run_demo  # noqa: E402
from ssp.sweep.stats import paired_bootstrap  # noqa: E402


def per_problem_pass_rates(entry: dict) -> dict[str, float]:
    """Each test problem's fraction of correct samples, from an eval.json entry."""
    samples = entry["samples"]
    return {problem: correct / samples for problem, correct in entry["per_problem"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/demo-seeds", help="one demo run folder per seed goes here")
    parser.add_argument("--reuse", action="store_true", help="keep run folders that already hold a summary.json")
    args = parser.parse_args()
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
        spectrum = per_problem_pass_rates(json.loads((out / "sft" / "eval.json").read_text())["models"]["spectrum"])
        final_stage = list(summary["signal_stages"])[-1]
        signal = per_problem_pass_rates(
            json.loads((out / "rl" / "signal.json").read_text())["evaluations"][final_stage]
        )
        for name, rates in (("spectrum", spectrum), ("signal", signal)):
            if abs(sum(rates.values()) / len(rates) - summary[name]["pass@1"]) > 1e-9:
                raise SystemExit(f"seed {seed}: per-problem {name} pass rates disagree with summary.json")
        differences = [signal[problem] - spectrum[problem] for problem in spectrum]
        mean = sum(differences) / len(differences)
        bootstrap = paired_bootstrap([dict(enumerate(differences))])
        se, low, high = bootstrap["se"], bootstrap["low"], bootstrap["high"]
        lines.append(
            f"| {seed} | {seconds} | {summary['base']['pass@1']:.3f} | {summary['best_single']['pass@1']:.3f} "
            f"| {summary['spectrum']['pass@1']:.3f} | {summary['signal']['pass@1']:.3f} | {mean:+.4f} | {se:.4f} "
            f"| [{low:+.4f}, {high:+.4f}] |"
        )
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
