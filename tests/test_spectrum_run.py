"""One full small spectrum run through the CLI, asserting every file it leaves and what is in them."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from ssp.cli import main
from ssp.config import load_recipe

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "sft.yaml"
SMALL = [
    "model.tiny.pretrain.steps=4",  # subprocesses do not see conftest's cap on pretraining
    "model.tiny.hidden_size=32",
    "model.tiny.num_layers=2",
    "model.tiny.num_heads=2",
    "model.tiny.intermediate_size=64",
    "task.train_size=64",
    "task.probe_size=2",
    "task.test_size=2",
    "sft.max_steps=6",
    "sft.save_every=3",
    "sft.per_device_train_batch_size=8",
    "sft.logging_steps=3",
    "probe.sampling.n=4",
    "probe.sampling.max_new_tokens=16",
    "probe.ks=[1,2,4]",
    "fusion.k=4",
    "eval.sampling.n=4",
    "eval.sampling.max_new_tokens=16",
    "eval.ks=[1,4]",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spectrum") / "run"
    assert main(["sft", str(DEMO), f"output_dir={out}", *SMALL]) == 0
    return out


def read(path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_run_folder_layout(run):
    assert read(run / "data.json")["train"] == {
        "problems": 64,
        "by_domain": {"arithmetic": 16, "linear": 16, "modular": 16, "sequence": 16},
        "sft_examples": 128,
    }
    for name in (
        "recipe.yaml",
        "data.json",
        "probe.json",
        "selection.json",
        "eval.json",
        "cost.json",
        "spectrum_report.md",
    ):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-3", "step-6"]
    assert not list((run / "checkpoints").glob("checkpoint-*"))
    for model_dir in (run / "base", run / "checkpoints" / "step-3", run / "spectrum"):
        AutoModelForCausalLM.from_pretrained(model_dir)  # every model folder loads as an ordinary HF model


@pytest.mark.slow
def test_resolved_recipe_is_written_and_reloads(run):
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert resolved["sft"]["max_steps"] == 6 and resolved["output_dir"] == str(run)
    assert load_recipe(run / "recipe.yaml", ["overwrite=true"]).probe.ks == [1, 2, 4]


@pytest.mark.slow
def test_probe_covers_checkpoint_by_subdomain_by_k(run):
    probe = read(run / "probe.json")
    assert probe["metric"] == "pass@4"
    assert set(probe["checkpoints"]) == {"step-3", "step-6"}
    for per_domain in probe["checkpoints"].values():
        assert set(per_domain) == {"arithmetic", "linear", "modular", "sequence", "all"}
        for metrics in per_domain.values():
            assert 0.0 <= metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"] <= 1.0
            assert metrics["samples"] == 4
        assert per_domain["linear"]["problems"] == 2 and per_domain["all"]["problems"] == 8


@pytest.mark.slow
def test_selection_is_the_argmax_and_the_merge_is_its_average(run):
    probe = read(run / "probe.json")["checkpoints"]
    selection = read(run / "selection.json")
    for domain, chosen in selection["subdomains"].items():
        best = max(probe[c][domain]["pass@4"] for c in probe)
        assert chosen["score"] == best == probe[chosen["checkpoint"]][domain]["pass@4"]
        assert chosen["weight"] == 0.25
    chosen = [selection["subdomains"][d]["checkpoint"] for d in sorted(selection["subdomains"])]
    tensors = [load_file(run / "checkpoints" / c / "model.safetensors") for c in chosen]
    merged = load_file(run / "spectrum" / "model.safetensors")
    for name, value in merged.items():
        expected = sum(t[name] for t in tensors) / len(tensors)
        assert torch.allclose(value, expected, atol=1e-6), name


@pytest.mark.slow
def test_test_split_evaluation_and_report(run):
    test = read(run / "eval.json")["models"]
    assert set(test) == {"base", "best_single", "spectrum"}
    assert test["best_single"]["checkpoint"] == read(run / "selection.json")["best_single"]
    for entry in test.values():
        assert 0 <= entry["pass@1"] <= entry["pass@4"] <= 1 and 0 <= entry["greedy"] <= 1
        assert entry["problems"] == 8
    report = (run / "spectrum_report.md").read_text()
    assert "| step-3 | arithmetic |" in report and "| spectrum |" in report and "## Selection" in report


@pytest.mark.slow
def test_cost_record(run):
    cost = read(run / "cost.json")
    assert cost["device_type"] == "cpu" and cost["device_count"] == 1 and cost["processes"] == 1
    assert cost["price_per_device_hour"] == 0.1
    assert cost["device_hours"] == pytest.approx(cost["wall_seconds"] / 3600)
    assert cost["dollars"] == pytest.approx(cost["device_hours"] * 0.1)
    assert cost["tokens_trained"] > 6 * 8 * 10  # 6 steps of 8 examples, each well over 10 tokens
    assert cost["tokens_generated"] > 0
    assert set(cost["phases_seconds"]) == {"train", "probe", "fusion", "eval"}


@pytest.mark.slow
def test_pass_at_1_selection_and_single_path_ablation(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "sft",
                str(DEMO),
                f"output_dir={out}",
                *SMALL,
                "fusion.metric=pass@1",
                "data.paths_per_problem=1",
                "eval.base=false",
                "eval.greedy=false",
                "sft.save_every=6",
            ]
        )
        == 0
    )
    assert read(out / "selection.json")["metric"] == "pass@1"
    assert set(read(out / "eval.json")["models"]) == {"best_single", "spectrum"}
    # one checkpoint selected for every subdomain: the merge is that checkpoint, bit for bit
    merged = load_file(out / "spectrum" / "model.safetensors")
    single = load_file(out / "checkpoints" / "step-6" / "model.safetensors")
    assert all(torch.equal(merged[k], single[k]) for k in single)
    assert read(out / "data.json")["train"]["sft_examples"] == 64  # 64 problems x 1 path


@pytest.mark.slow
def test_training_metrics_go_to_wandb_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "run"
    args = ["sft.report_to=[wandb]", "sft.max_steps=2", "sft.save_every=2", "eval.base=false", "eval.greedy=false"]
    assert main(["sft", str(DEMO), f"output_dir={out}", *SMALL, *args]) == 0
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
