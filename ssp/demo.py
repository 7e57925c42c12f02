"""`ssp demo`: the whole Spectrum-to-Signal pipeline on the embedded tiny model and synthetic task.

tiny model (pretrained once per machine) -> multi-path SFT -> probing, selection, fusion -> RL with MGPO ->
evaluation, then one table and OUT/summary.json. OUT/sft is the spectrum run, OUT/rl the signal run.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ssp.config import RecipeError, load_recipe
from ssp.cost import device_cost
from ssp.files import read_json, write_json
from ssp.signal.run import run_signal, signal_stages
from ssp.spectrum.run import run_spectrum
from ssp.tables import markdown_lines

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "demo"


def check_demo_folder(out: Path, overwrite: bool) -> None:
    """An earlier demo run in `out` is resumed (each stage continues where it stopped), or deleted with
    `overwrite`; a folder that is not a demo run is refused."""
    if not out.exists():
        return
    if not out.is_dir() or (
        any(out.iterdir()) and not (out / "sft").is_dir() and not (out / "summary.json").is_file()
    ):
        raise RecipeError(f"--out {out}: holds files that are not an ssp demo run; choose another folder")
    if overwrite:
        shutil.rmtree(out)


def _metrics(entry: dict, ks: list[int]) -> dict:
    result = {"pass@1": entry["pass@1"], "pass@k": {str(k): entry[f"pass@{k}"] for k in ks}}
    if "greedy" in entry:
        result["greedy"] = entry["greedy"]
    return result


def _costs(cost: dict, seconds: float, tokens: int) -> dict:
    """`tokens`, and the device-hours and dollars of `seconds` on the devices of the run whose cost.json is `cost`."""
    device_hours, dollars = device_cost(seconds, cost["device_count"], cost["price_per_device_hour"])
    return {"tokens": tokens, "device_hours": device_hours, "dollars": dollars}


def build_summary(sft_dir: Path, rl_dir: Path, ks: list[int], seed: int) -> dict:
    """summary.json: test-split numbers of every model, with the cumulative cost of producing it."""
    spectrum_eval = read_json(sft_dir / "eval.json")["models"]
    spectrum_cost, signal_cost = read_json(sft_dir / "cost.json"), read_json(rl_dir / "cost.json")
    signal = read_json(rl_dir / "signal.json")
    spectrum_tokens = spectrum_cost["tokens_trained"] + spectrum_cost["tokens_generated"]
    spectrum_total = _costs(spectrum_cost, spectrum_cost["wall_seconds"], spectrum_tokens)
    summary: dict = {"seed": seed, "ks": ks}
    if "base" in spectrum_eval:  # eval.base: false skips the initial model
        summary["base"] = {**_metrics(spectrum_eval["base"], ks), **_costs(spectrum_cost, 0.0, 0)}
    summary["best_single"] = {**_metrics(spectrum_eval["best_single"], ks), **spectrum_total}
    summary["best_single"]["checkpoint"] = spectrum_eval["best_single"]["checkpoint"]
    summary["spectrum"] = {**_metrics(spectrum_eval["spectrum"], ks), **spectrum_total}
    # RL rows accumulate: the spectrum stage, the evaluation before RL, then each stage's training and evaluation.
    phases = signal_cost["phases_seconds"]
    seconds, tokens = spectrum_cost["wall_seconds"] + phases.get("eval", 0.0), spectrum_tokens
    summary["signal_stages"] = {}
    for name, stage in signal["stages"].items():
        seconds += phases[f"train:{name}"] + phases.get(f"eval:{name}", 0.0)
        tokens += stage["tokens_generated"] + stage["tokens_trained"]
        entry = {**_metrics(signal["evaluations"][name], ks), **_costs(signal_cost, seconds, tokens)}
        summary["signal_stages"][name] = entry
    summary["signal"] = summary["signal_stages"][list(signal["stages"])[-1]]
    total_hours = spectrum_cost["device_hours"] + signal_cost["device_hours"]
    summary["cost"] = {
        "wall_seconds": spectrum_cost["wall_seconds"] + signal_cost["wall_seconds"],
        "device_hours": total_hours,
        "dollars": spectrum_cost["dollars"] + signal_cost["dollars"],
        "tokens_trained": spectrum_cost["tokens_trained"] + signal_cost["tokens_trained"],
        "tokens_generated": spectrum_cost["tokens_generated"] + signal_cost["tokens_generated"],
        "stages": {"spectrum": spectrum_cost, "signal": signal_cost},
    }
    return summary


def summary_table(summary: dict) -> list[str]:
    ks = summary["ks"]
    header = ["model", "pass@1"] + [f"pass@{k}" for k in ks if k != 1] + ["greedy", "tokens", "device-h", "$"]
    rows = []
    labelled = [("base (before SFT)", summary["base"])] if "base" in summary else []
    labelled += [(f"best single ({summary['best_single']['checkpoint']})", summary["best_single"]),
                 ("spectrum (merged)", summary["spectrum"])]  # fmt: skip
    labelled += [(f"RL stage {name}", entry) for name, entry in summary["signal_stages"].items()]
    for label, entry in labelled:
        row = [label, f"{entry['pass@1']:.3f}"] + [f"{entry['pass@k'][str(k)]:.3f}" for k in ks if k != 1]
        row += [f"{entry.get('greedy', float('nan')):.3f}", f"{entry['tokens']:,}", f"{entry['device_hours']:.4f}"]
        rows.append(row + [f"{entry['dollars']:.4f}"])
    return markdown_lines(header, rows)


def scoring_settings(recipe) -> dict:
    """What decides the numbers a model is scored by: its test problems and the evaluation's settings. A pipeline's
    two stages must share them, and a sweep's variants the baseline's."""
    task = recipe.task  # train and probe sizes aside: the synthetic test split is drawn first, alone
    return {
        "task": (task.seed, task.difficulty, task.domains, task.test_size),
        "data.test": recipe.data.test,
        "eval.sampling": recipe.eval.sampling,
        "eval.ks": recipe.eval.ks,
        "eval.greedy": recipe.eval.greedy,
    }


def load_pipeline(
    sft_recipe: str | Path,
    rl_recipe: str | Path,
    sft_out: str | Path,
    rl_out: str | Path,
    seed: int,
    sft_overrides: list[str] = (),
    rl_overrides: list[str] = (),
):
    """The SFT and RL recipes of one pipeline, the RL run starting from the SFT run's spectrum model: both loaded
    and checked, the curriculum too, before minutes of SFT (`ssp demo`, `ssp sweep`)."""
    # `seed` drives model initialisation, data order and sampling; the task itself (task.seed) stays fixed, so
    # every seed is scored on the same test problems.
    sft = load_recipe(sft_recipe, [f"output_dir={sft_out}", f"seed={seed}", *sft_overrides])
    # The initial model (the spectrum run) exists only after SFT: `tiny` stands in while the recipe is checked.
    # The RL run does not evaluate its initial model again (eval.base=false): that is the spectrum model, already
    # evaluated by the SFT run with the same settings.
    rl_args = [f"output_dir={rl_out}", "model.name_or_path=tiny", f"seed={seed}", "eval.base=false"]
    rl = load_recipe(rl_recipe, [*rl_args, *rl_overrides])
    signal_stages(rl)  # the curriculum and its trl keys
    if scoring_settings(sft) != scoring_settings(rl) or sft.task != rl.task:
        raise RecipeError(
            f"{Path(sft_recipe).name} and {Path(rl_recipe).name} must share eval, task and data.test to be comparable"
        )
    return sft, dataclasses.replace(rl, model=dataclasses.replace(rl.model, name_or_path=str(sft_out)))


def run_demo(
    out: str | Path,
    seed: int = 0,
    sft_overrides: list[str] = (),
    rl_overrides: list[str] = (),
    overwrite: bool = False,
) -> dict:
    """The demo into `out`; rerun on the same folder it resumes an interrupted demo (`overwrite` starts over)."""
    out = Path(out)
    sft, rl = load_pipeline(RECIPES / "sft.yaml", RECIPES / "rl.yaml", out / "sft", out / "rl", seed,
                            sft_overrides, rl_overrides)  # fmt: skip
    check_demo_folder(out, overwrite)  # only after both recipes validated
    run_spectrum(sft)
    run_signal(rl)
    summary = build_summary(out / "sft", out / "rl", rl.eval.ks, seed)
    write_json(out / "summary.json", summary)
    print(f"\nSpectrum-to-Signal demo (seed {seed}), test split, {rl.eval.sampling.n} samples per problem at "
          f"temperature {rl.eval.sampling.temperature}; tokens, device-hours and dollars are cumulative:")  # fmt: skip
    print("\n".join(summary_table(summary)))
    print(f"\nSummary: {out / 'summary.json'}")
    return summary
