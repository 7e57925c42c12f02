"""A sweep's results: per variant and model, the mean and 95% interval over seeds, the paired difference to the
baseline, device-hours and dollars; written as OUT/sweep.csv, OUT/sweep.json, OUT/sweep.md and OUT/plots/*.png.

The models of a pipeline are those `ssp demo` reports (`ssp.demo.build_summary`): the initial model (`base`, when
the SFT recipe evaluates it), the best single checkpoint, the merged spectrum model and each RL stage (`rl:<name>`),
the last being the pipeline's `final` model. Costs are cumulative and per pipeline, as if it ran alone; the sweep's
own cost counts each shared run once.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ssp.coerce import RecipeError
from ssp.demo import build_summary
from ssp.files import read_json, write_json, write_text
from ssp.signal.curriculum import resolve_stages
from ssp.sweep.plan import SweepPlan
from ssp.sweep.plots import plot_accuracy_vs_dollars, plot_pass_at_k, plot_rl_curves
from ssp.sweep.stats import paired_bootstrap, seed_interval
from ssp.tables import markdown_lines

INTERVALS = (
    "Intervals: a metric's is the 95% t-interval of its mean over seeds; a difference's is a paired bootstrap over "
    "test problems: each problem's difference of pass rates is averaged over the seeds, the problems are resampled "
    "with replacement (one draw for all seeds, which share the test set), and the 2.5th and 97.5th percentiles of "
    "the mean are the interval (docs/ablations.md)."
)


def pipeline_results(plan: SweepPlan, variant: str, seed: int) -> dict:
    """One pipeline's models: label -> {metrics and costs of build_summary, per-problem pass rates}, plus the RL
    stages' training logs."""
    sft_name, rl_name = plan.pipelines[(variant, seed)]
    sft_dir, rl_dir = plan.run_dir(sft_name), plan.run_dir(rl_name)
    rl = plan.runs[rl_name].recipe
    summary = build_summary(sft_dir, rl_dir, rl.eval.ks, seed)
    evaluations = dict(read_json(sft_dir / "eval.json")["models"])
    signal = read_json(rl_dir / "signal.json")
    models = {label: summary[label] for label in ("base", "best_single", "spectrum") if label in summary}
    logs = {}
    for stage, entry in summary["signal_stages"].items():
        models[f"rl:{stage}"] = entry
        evaluations[f"rl:{stage}"] = signal["evaluations"][stage]
        logs[stage] = read_json(rl_dir / "stages" / stage / "metrics.json")["log_history"]
    for label, entry in models.items():
        evaluation = evaluations[label]
        entry["per_problem"] = {p: c / evaluation["samples"] for p, c in evaluation["per_problem"].items()}
    correctness = {stage: settings.data[0].reward for stage, settings in resolve_stages(rl.rl, check_files=False)}
    return {"models": models, "final": f"rl:{list(summary['signal_stages'])[-1]}", "logs": logs,
            "correctness": correctness, "cost": summary["cost"]}  # fmt: skip


def metric_names(ks: list[int]) -> list[str]:
    return ["pass@1"] + [f"pass@{k}" for k in ks if k != 1] + ["greedy"]


def metric_value(entry: dict, metric: str) -> float:
    if metric == "pass@1":
        return entry["pass@1"]
    if metric == "greedy":
        return entry.get("greedy", math.nan)
    return entry["pass@k"][metric.removeprefix("pass@")]


def paired_difference(plan: SweepPlan, results: dict, variant: str, label: str) -> dict | None:
    """pass@1 of `label` in `variant` minus the baseline's same model (the final model: the baseline's final), over
    the seeds both have; None for the baseline itself or a model the baseline lacks."""
    if variant == plan.baseline:
        return None
    differences = []
    for seed in plan.config.seeds:
        mine, theirs = results[(variant, seed)], results[(plan.baseline, seed)]
        other = theirs["final"] if label == mine["final"] else label
        if other not in theirs["models"]:
            return None
        a, b = mine["models"][label]["per_problem"], theirs["models"][other]["per_problem"]
        if a.keys() != b.keys():
            raise RecipeError(
                f"variant {variant} and the baseline {plan.baseline} were tested on different problems (their task or "
                f"data.test differ): no paired difference; compare them with a baseline tested like them"
            )
        differences.append({problem: a[problem] - b[problem] for problem in a})
    return paired_bootstrap(differences, plan.config.resamples)


def aggregate(plan: SweepPlan, results: dict, ks: list[int]) -> list[dict]:
    """One row per variant and model: each metric's mean and interval over seeds, the difference to the baseline,
    and the mean cumulative cost."""
    rows = []
    for variant in (v.name for v in plan.variants):
        runs = [results[(variant, seed)] for seed in plan.config.seeds]
        for label in runs[0]["models"]:
            entries = [run["models"][label] for run in runs]
            row = {"variant": variant, "model": label, "final": label == runs[0]["final"],
                   "seeds": len(entries)}  # fmt: skip
            for metric in metric_names(ks):
                mean, low, high = seed_interval([metric_value(entry, metric) for entry in entries])
                row.update({f"{metric}": mean, f"{metric}_low": low, f"{metric}_high": high})
            difference = paired_difference(plan, results, variant, label)
            for key in ("mean", "se", "low", "high"):
                row[f"diff_pass@1_{key}"] = math.nan if difference is None else difference[key]
            for key in ("tokens", "device_hours", "dollars"):
                row[key] = sum(entry[key] for entry in entries) / len(entries)
            gains = [entry["pass@1"] - run["models"]["base"]["pass@1"]
                     for entry, run in zip(entries, runs, strict=True) if "base" in run["models"]]  # fmt: skip
            gain = sum(gains) / len(gains) if len(gains) == len(entries) else math.nan
            row["dollars_per_point"] = row["dollars"] / (100 * gain) if gain > 0 else math.nan
            rows.append(row)
    return rows


def interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """`0.074 [0.052, 0.096]`; a difference signed, `+0.012 [-0.004, +0.028]`; no interval from one seed."""
    if math.isnan(mean):
        return "n/a"
    form = "+.3f" if signed else ".3f"
    return f"{mean:{form}}" if math.isnan(low) else f"{mean:{form}} [{low:{form}}, {high:{form}}]"


def money(value: float, digits: int = 4) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def sweep_markdown(plan: SweepPlan, rows: list[dict], ks: list[int], sweep_cost: dict, plots: list[str]) -> str:
    config = plan.config
    rl = next(run.recipe for run in plan.runs.values() if run.stage == "rl")
    sampling = rl.eval.sampling
    lines = [f"# Sweep: {plan.path}", ""]
    lines.append(f"{len(plan.variants)} variants x {len(config.seeds)} seeds ({', '.join(map(str, config.seeds))}); "
                 f"baseline `{plan.baseline}`. Test split, {sampling.n} samples per problem at temperature "
                 f"{sampling.temperature}.")  # fmt: skip
    runs = plan.runs.values()
    lines.append(f"Runs: {sum(r.stage == 'sft' for r in runs)} SFT and {sum(r.stage == 'rl' for r in runs)} RL for "
                 f"{len(plan.pipelines)} pipelines; the whole sweep took {sweep_cost['device_hours']:.4f} "
                 f"device-hours, ${sweep_cost['dollars']:.4f} (each shared run counted once).")  # fmt: skip
    lines += ["", "## Final model (the last RL stage)", ""]
    metrics = metric_names(ks)
    header = ["variant", *(f"{m} (95% CI)" if m == "pass@1" else m for m in metrics)]
    header += ["Δ pass@1 vs baseline (95% CI)", "device-h", "$", "$ per point"]
    table = []
    for row in (r for r in rows if r["final"]):
        cells = [row["variant"] + (" (baseline)" if row["variant"] == plan.baseline else "")]
        cells.append(interval(row["pass@1"], row["pass@1_low"], row["pass@1_high"]))
        cells += [interval(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in metrics[1:]]
        cells.append(interval(row["diff_pass@1_mean"], row["diff_pass@1_low"], row["diff_pass@1_high"], True))
        cells += [money(row["device_hours"]), money(row["dollars"]), money(row["dollars_per_point"])]
        table.append(cells)
    lines += markdown_lines(header, table)
    lines += ["", "## Every model", ""]
    header = ["variant", "model", "pass@1 (95% CI)", "Δ pass@1 vs baseline (95% CI)", "device-h", "$"]
    table = [[row["variant"], row["model"], interval(row["pass@1"], row["pass@1_low"], row["pass@1_high"]),
              interval(row["diff_pass@1_mean"], row["diff_pass@1_low"], row["diff_pass@1_high"], True),
              money(row["device_hours"]), money(row["dollars"])] for row in rows]  # fmt: skip
    lines += markdown_lines(header, table)
    lines += ["", INTERVALS, "`$ per point`: the final model's dollars per percentage point of pass@1 gained over "
              "the initial model (n/a without `eval.base` or without a gain).", "", "## Plots", ""]  # fmt: skip
    lines += [f"![{Path(plot).stem}]({plot})" for plot in plots]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_sweep_report(plan: SweepPlan) -> dict:
    """Collect every pipeline's results and write the sweep's tables and plots; returns what sweep.json holds."""
    results = {pair: pipeline_results(plan, *pair) for pair in plan.pipelines}
    ks = next(run.recipe for run in plan.runs.values() if run.stage == "rl").eval.ks
    rows = aggregate(plan, results, ks)
    costs = [read_json(plan.run_dir(name) / "cost.json") for name in plan.runs]
    # A run that reused another's training carries its time in its own cost (its pipeline's, as if alone): once here.
    shared = [read_json(path) for name in plan.runs if (path := plan.run_dir(name) / "shared_training.json").is_file()]
    sweep_cost = {key: sum(cost[key] for cost in costs) - sum(reused[key] for reused in shared)
                  for key in ("device_hours", "dollars", "wall_seconds")}  # fmt: skip
    (plan.out / "plots").mkdir(parents=True, exist_ok=True)
    variants = [variant.name for variant in plan.variants]
    plots = [
        plot_pass_at_k(rows, ks, variants, plan.out / "plots" / "pass_at_k.png"),
        plot_rl_curves(results, variants, plan.config.seeds, plan.out / "plots" / "rl_curves.png"),
        plot_accuracy_vs_dollars(rows, plan.out / "plots" / "accuracy_vs_dollars.png"),
    ]
    plots = [str(Path(plot).relative_to(plan.out)) for plot in plots]
    write_text(plan.out / "sweep.csv", csv_text(rows))
    # JSON has no NaN: an undefined number (no interval from one seed, no baseline difference) is null there.
    json_rows = [{key: None if value != value else value for key, value in row.items()} for row in rows]
    record = {"baseline": plan.baseline, "seeds": plan.config.seeds, "rows": json_rows, "cost": sweep_cost,
              "pipelines": {f"{v} seed {s}": list(runs) for (v, s), runs in plan.pipelines.items()}}  # fmt: skip
    write_json(plan.out / "sweep.json", record)
    markdown = sweep_markdown(plan, rows, ks, sweep_cost, plots)
    write_text(plan.out / "sweep.md", markdown)
    print(markdown.split("## Every model")[0].rstrip())
    print(f"\nSweep report: {plan.out / 'sweep.md'} (and sweep.csv, sweep.json, plots/)")
    return record
