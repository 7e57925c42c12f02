"""The sweep's plots: pass@k curves of each variant's final model, reward and accuracy over RL steps, and accuracy
against dollars. Each returns the path it wrote; error bars are the 95% intervals over seeds."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def _error(row: dict, metric: str) -> list[list[float]]:
    """Matplotlib's asymmetric error bars; none (0) where one seed gives no interval."""
    if math.isnan(row[f"{metric}_low"]):
        return [[0.0], [0.0]]
    return [[100 * (row[metric] - row[f"{metric}_low"])], [100 * (row[f"{metric}_high"] - row[metric])]]


def plot_pass_at_k(rows: list[dict], ks: list[int], variants: list[str], path: Path) -> Path:
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    finals = {row["variant"]: row for row in rows if row["final"]}
    for variant in variants:
        row = finals[variant]
        values = [100 * row[f"pass@{k}"] for k in ks]
        errors = [[e[0][0] for e in (_error(row, f"pass@{k}") for k in ks)],
                  [e[1][0] for e in (_error(row, f"pass@{k}") for k in ks)]]  # fmt: skip
        axes.errorbar(ks, values, yerr=errors, marker="o", capsize=3, label=variant)
    axes.set_xscale("log", base=2)
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set_xlabel("k")
    axes.set_ylabel("pass@k of the final model (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def _curve(logs: list[dict], key: str) -> tuple[list[int], list[float]]:
    steps = [entry["step"] for entry in logs if key in entry]
    return steps, [entry[key] for entry in logs if key in entry]


def plot_rl_curves(results: dict, variants: list[str], seeds: list[int], path: Path) -> Path:
    """Mean over seeds of the training reward and of the correctness reward's mean (accuracy) at each logged step,
    stages one after another."""
    figure = Figure(figsize=(10, 4))
    reward_axes, accuracy_axes = figure.subplots(1, 2)
    for variant in variants:
        curves = {"reward": [], "accuracy": []}
        for seed in seeds:
            result = results[(variant, seed)]
            offset, steps, rewards, accuracies = 0, [], [], []
            for stage, logs in result["logs"].items():
                stage_steps, stage_rewards = _curve(logs, "reward")
                _, stage_accuracy = _curve(logs, f"rewards/{result['correctness'][stage]}/mean")
                steps += [offset + step for step in stage_steps]
                rewards += stage_rewards
                accuracies += stage_accuracy or [math.nan] * len(stage_steps)
                offset += max(stage_steps, default=0)
            curves["reward"].append((steps, rewards))
            curves["accuracy"].append((steps, accuracies))
        for axes, name in ((reward_axes, "reward"), (accuracy_axes, "accuracy")):
            steps = curves[name][0][0]
            if not steps or any(seed_steps != steps for seed_steps, _ in curves[name]):
                continue  # seeds logged different steps: no mean to draw
            means = [statistics.fmean(values[i] for _, values in curves[name]) for i in range(len(steps))]
            axes.plot(steps, means, marker=".", label=variant)
    for axes, label in ((reward_axes, "training reward"), (accuracy_axes, "training accuracy (correctness reward)")):
        axes.set_xlabel("RL step")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    reward_axes.legend(fontsize="small")
    return _save(figure, path)


def plot_accuracy_vs_dollars(rows: list[dict], path: Path) -> Path:
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for row in (r for r in rows if r["final"]):
        axes.errorbar([row["dollars"]], [100 * row["pass@1"]], yerr=_error(row, "pass@1"), marker="o", capsize=3,
                      label=row["variant"])  # fmt: skip
    axes.set_xlabel("dollars per pipeline (cumulative, shared runs counted in full)")
    axes.set_ylabel("pass@1 of the final model (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)
