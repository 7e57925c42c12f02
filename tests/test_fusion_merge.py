"""`fusion.merge`: uniform (the default), score (specialists weighted by their probing score) and none (no merge:
the spectrum model is the best single checkpoint), on real runs whose probing results are set by the test."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_spectrum_run import DEMO, SMALL

import ssp.spectrum.run
from ssp.cli import main
from ssp.config import FusionConfig, RecipeError
from ssp.spectrum.run import check_fusion_weights, merge_weights

DOMAINS = ["arithmetic", "linear", "modular", "sequence"]
# pass@4 of each subdomain at each checkpoint: the specialists are step-3 (arithmetic, linear) and step-6 (the
# others); step-6 has the best mean (0.5 vs 0.3125), so it is the best single checkpoint.
SCORES = {"step-3": [0.5, 0.25, 0.25, 0.25], "step-6": [0.25, 0.0, 1.0, 0.75]}


def probe_result(scores: dict[str, list[float]]) -> dict:
    metrics = {}
    for checkpoint, values in scores.items():
        per_domain = {
            d: {"pass@1": v / 2, "pass@2": v, "pass@4": v, "samples": 4} for d, v in zip(DOMAINS, values, strict=True)
        }
        metrics[checkpoint] = {**per_domain, "all": {"pass@1": 0.0, "pass@2": 0.0, "pass@4": 0.0, "samples": 4}}
    return metrics


def run(tmp_path: Path, monkeypatch, merge: str, scores=SCORES) -> Path:
    """A small spectrum run (training and evaluation real) whose probing gives `scores`."""
    monkeypatch.setattr(ssp.spectrum.run, "probe_checkpoints", lambda *args: probe_result(scores))
    out = tmp_path / merge
    args = [f"fusion.merge={merge}", "eval.base=false", "eval.greedy=false", "task.test_size=1"]
    assert main(["sft", str(DEMO), f"output_dir={out}", *SMALL, *args]) == 0
    return out


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def weights_of(out: Path) -> dict[str, float]:
    return {d: s["weight"] for d, s in read(out / "selection.json")["subdomains"].items()}


def test_merge_weights_for_each_mode():
    selection = {d: {"score": s} for d, s in zip(DOMAINS, [0.5, 0.25, 0.0, 0.25], strict=True)}
    assert merge_weights(FusionConfig(), selection) == ([1.0] * 4, None)
    assert merge_weights(FusionConfig(merge="score"), selection) == ([0.5, 0.25, 0.0, 0.25], None)
    assert merge_weights(FusionConfig(merge="none"), selection) == ([0.0] * 4, None)
    explicit = FusionConfig(weights={"linear": 2.0, "sequence": 1.0})
    assert merge_weights(explicit, selection) == ([0.0, 2.0, 0.0, 1.0], None)
    zero = {d: {"score": 0.0} for d in DOMAINS}
    weights, note = merge_weights(FusionConfig(merge="score"), zero)
    assert weights == [1.0] * 4 and "every selected specialist scored 0, so the merge is uniform" in note


def test_explicit_weights_go_only_with_the_uniform_merge(tmp_path, capsys):
    check_fusion_weights({"linear": 1.0}, set(DOMAINS), "uniform")
    with pytest.raises(RecipeError, match="^fusion.weights: explicit weights replace the uniform merge; fusion.merge"):
        check_fusion_weights({"linear": 1.0}, set(DOMAINS), "score")
    out = tmp_path / "run"
    assert main(["sft", str(DEMO), f"output_dir={out}", "fusion.merge=none", "fusion.weights={linear: 1.0}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ssp: error: fusion.weights: explicit weights replace the uniform merge; fusion.merge is none"]
    assert not out.exists()


@pytest.mark.slow
def test_score_merge_weights_each_specialist_by_its_score(tmp_path, monkeypatch):
    out = run(tmp_path, monkeypatch, "score")
    selection = read(out / "selection.json")
    assert selection["merge"] == "score" and "merge_note" not in selection
    chosen = {d: s["checkpoint"] for d, s in selection["subdomains"].items()}
    assert chosen == {"arithmetic": "step-3", "linear": "step-3", "modular": "step-6", "sequence": "step-6"}
    total = 0.5 + 0.25 + 1.0 + 0.75
    assert weights_of(out) == pytest.approx({"arithmetic": 0.5 / total, "linear": 0.25 / total,
                                             "modular": 1.0 / total, "sequence": 0.75 / total})  # fmt: skip
    step3, step6 = (load_file(out / "checkpoints" / c / "model.safetensors") for c in ("step-3", "step-6"))
    merged = load_file(out / "spectrum" / "model.safetensors")
    for name, value in merged.items():  # step-3 holds 0.75 / 2.5 of the weight, step-6 the rest
        torch.testing.assert_close(value, 0.3 * step3[name] + 0.7 * step6[name], atol=1e-6, rtol=0)
    report = (out / "spectrum_report.md").read_text()
    assert "Merge: `score`, each specialist weighted by its pass@4, normalised." in report


@pytest.mark.slow
def test_score_merge_with_every_score_0_is_uniform_and_says_so(tmp_path, monkeypatch, capsys):
    out = run(tmp_path, monkeypatch, "score", {"step-3": [0.0] * 4, "step-6": [0.0] * 4})
    selection = read(out / "selection.json")
    assert weights_of(out) == dict.fromkeys(DOMAINS, 0.25)
    assert selection["merge_note"] == "fusion.merge score: every selected specialist scored 0, so the merge is uniform"
    assert "warning: fusion.merge score: every selected specialist scored 0" in capsys.readouterr().err
    assert "Note: fusion.merge score: every selected specialist scored 0" in (out / "spectrum_report.md").read_text()


@pytest.mark.slow
def test_no_merge_makes_the_best_single_checkpoint_the_spectrum_model(tmp_path, monkeypatch):
    out = run(tmp_path, monkeypatch, "none")
    selection = read(out / "selection.json")
    assert selection["merge"] == "none" and selection["best_single"] == "step-6"
    assert weights_of(out) == dict.fromkeys(DOMAINS, 0.0)
    best, spectrum = out / "checkpoints" / "step-6", out / "spectrum"
    assert (best / "model.safetensors").read_bytes() == (spectrum / "model.safetensors").read_bytes()
    assert read(best / "config.json") == read(spectrum / "config.json")
    evaluation = read(out / "eval.json")["models"]
    assert set(evaluation) == {"best_single", "spectrum"} and evaluation["best_single"]["checkpoint"] == "step-6"
    assert evaluation["spectrum"]["pass@1"] == evaluation["best_single"]["pass@1"]  # one model, the same draws
    report = (out / "spectrum_report.md").read_text()
    assert "Merge: `none`, no merge; `spectrum` is a copy of the best single checkpoint (step-6)." in report
