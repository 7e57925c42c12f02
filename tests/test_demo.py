"""`ssp demo` end to end at a reduced size: the summary's shape, its sums, and the same numbers twice."""

import json
import signal

import pytest
from test_resume import ssp_run
from test_spectrum_run import SMALL as SMALL_SFT

from ssp.cli import main
from ssp.config import RecipeError
from ssp.demo import check_demo_folder, run_demo

SMALL_RL = ["eval.base=true", "rl.max_steps=2", "rl.per_device_train_batch_size=8", "rl.num_generations=4",
            "rl.max_completion_length=16", "eval.sampling.n=4", "eval.sampling.max_new_tokens=16", "eval.ks=[1,4]",
            "task.train_size=64", "task.probe_size=2", "task.test_size=2"]  # fmt: skip


def metrics_only(summary: dict) -> dict:
    """Everything but wall-clock-derived numbers, which differ between runs by nature."""
    keep = {}
    for name in ("base", "best_single", "spectrum", "signal"):
        keep[name] = {k: v for k, v in summary[name].items() if k not in ("device_hours", "dollars")}
    keep["signal_stages"] = {n: {k: v for k, v in e.items() if k not in ("device_hours", "dollars")}
                             for n, e in summary["signal_stages"].items()}  # fmt: skip
    keep["tokens"] = (summary["cost"]["tokens_trained"], summary["cost"]["tokens_generated"])
    return keep


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return [run_demo(root / name, seed=0, sft_overrides=SMALL_SFT, rl_overrides=SMALL_RL) for name in ("a", "b")], root


@pytest.mark.slow
def test_summary_shape_and_cost_totals(two_runs):
    (summary, _), root = two_runs
    on_disk = json.loads((root / "a" / "summary.json").read_text())
    assert on_disk["spectrum"]["pass@1"] == summary["spectrum"]["pass@1"]
    for name in ("base", "spectrum", "signal"):
        entry = on_disk[name]
        assert isinstance(entry["pass@1"], float)
        assert set(entry["pass@k"]) == {"1", "4"} and entry["pass@k"]["1"] == entry["pass@1"]
    assert list(on_disk["signal_stages"]) == ["main"] and on_disk["signal"] == on_disk["signal_stages"]["main"]
    spectrum_cost = json.loads((root / "a" / "sft" / "cost.json").read_text())
    signal_cost = json.loads((root / "a" / "rl" / "cost.json").read_text())
    cost = on_disk["cost"]
    assert cost["dollars"] == pytest.approx(spectrum_cost["dollars"] + signal_cost["dollars"])
    assert cost["tokens_generated"] == spectrum_cost["tokens_generated"] + signal_cost["tokens_generated"]
    assert on_disk["base"]["tokens"] == 0
    assert on_disk["signal"]["tokens"] > on_disk["spectrum"]["tokens"] > 0
    assert on_disk["signal"]["dollars"] > on_disk["spectrum"]["dollars"]
    # the RL run's evaluation of its initial model is the spectrum model's evaluation: same model, same settings
    initial = json.loads((root / "a" / "rl" / "signal.json").read_text())["evaluations"]["initial"]
    assert initial["pass@1"] == on_disk["spectrum"]["pass@1"]


@pytest.mark.slow
def test_same_seed_gives_the_same_metrics(two_runs):
    (first, second), _ = two_runs
    assert metrics_only(first) == metrics_only(second)


def test_demo_refuses_a_folder_that_is_not_a_demo_run(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(RecipeError, match="holds files that are not an ssp demo run"):
        check_demo_folder(tmp_path, overwrite=True)
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not an ssp demo run" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_a_killed_demo_resumes_to_the_same_summary(two_runs, tmp_path):
    """`ssp demo` killed inside its RL stage (after the spectrum run finished), rerun: the same table."""
    (reference, _), _ = two_runs
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), *[f"--sft={o}" for o in SMALL_SFT], *[f"--rl={o}" for o in SMALL_RL]]
    code, _ = ssp_run(tmp_path / "killed.json", *args, point="step", n=7)  # SFT has 6 steps: RL's first
    assert (
        code == -signal.SIGKILL and (out / "sft" / "eval.json").is_file() and not (out / "rl" / "signal.json").exists()
    )
    _, resumed = ssp_run(tmp_path / "resumed.json", *args)
    assert resumed["step"] == 2 and "probe" not in resumed  # RL from its start; nothing of the spectrum run again
    assert metrics_only(json.loads((out / "summary.json").read_text())) == metrics_only(reference)
