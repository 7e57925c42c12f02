"""recipes/sft.yaml then recipes/rl.yaml, with overrides only (local data, CPU sizes), on the Qwen-shaped fixture:
the context and the stop tokens on disk in every model folder, code rows with their own prompt and reward, and the
code stage evaluated on a code test set."""

import json
import os
import subprocess

import pytest
from real_recipes import RL_RECIPE, SFT_RECIPE, rl_overrides, sft_overrides, write_data
from test_launch import REPO, zero2_launch
from transformers import AutoTokenizer

from ssp.cli import main

CONTEXT, THETA = 40960, 300000.0  # what both recipes set in model.context


@pytest.fixture(scope="module")
def runs(qwen_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    data = write_data(root / "data")
    assert main(["sft", str(SFT_RECIPE), *sft_overrides(str(qwen_model_dir), data, root / "sft")]) == 0
    assert main(["rl", str(RL_RECIPE), *rl_overrides(str(root / "sft"), data, root / "rl")]) == 0
    return root


def read(path):
    return json.loads(path.read_text())


def model_folders(root):
    sft, rl = root / "sft", root / "rl"
    return [sft / "base", *sorted((sft / "checkpoints").glob("step-*")), sft / "spectrum",
            *[rl / "stages" / name / "model" for name in ("math-16k", "math-32k", "code")]]  # fmt: skip


def assert_context_and_stops(folders, tokenizer):
    stops = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    for folder in folders:
        config = read(folder / "config.json")
        assert config["max_position_embeddings"] == CONTEXT, folder
        assert config["rope_parameters"]["rope_theta"] == THETA, folder
        assert read(folder / "generation_config.json")["eos_token_id"] == stops, folder


@pytest.mark.slow
def test_every_model_folder_has_the_recipe_context_and_the_end_of_turn_stop(runs, qwen_model_dir):
    assert read(qwen_model_dir / "config.json")["max_position_embeddings"] == 4096  # the fixture is untouched
    folders = model_folders(runs)
    assert len(folders) == 7  # base, step-2, step-4, spectrum and the three RL stages
    assert_context_and_stops(folders, AutoTokenizer.from_pretrained(qwen_model_dir))
    assert not (runs / "rl" / "base").exists()  # the spectrum model already had both: nothing rewritten


@pytest.mark.slow
def test_the_spectrum_stage_probes_math_and_code_subdomains(runs):
    probe = read(runs / "sft" / "probe.json")
    assert sorted(probe["checkpoints"]) == ["step-2", "step-4"]
    domains = set(probe["checkpoints"]["step-2"]) - {"all"}
    assert domains == {"arithmetic", "linear", "modular", "sequence", "code"}
    selection = read(runs / "sft" / "selection.json")["subdomains"]
    assert set(selection) == domains and abs(sum(s["weight"] for s in selection.values()) - 1) < 1e-9
    assert read(runs / "sft" / "data.json")["train"]["by_domain"]["code"] == 4
    cost = read(runs / "sft" / "cost.json")
    assert cost["generation_flops_estimate"] > 0 and cost["tokens_generated"] > 0


@pytest.mark.slow
def test_the_signal_stage_evaluates_every_stage_on_math_and_code(runs):
    signal = read(runs / "rl" / "signal.json")
    assert list(signal["evaluations"]) == ["initial", "math-16k", "math-32k", "code"]
    for name in ("math-16k", "math-32k", "code"):
        domains = read(runs / "rl" / "stages" / name / "eval.json")["domains"]
        assert "code" in domains and {"arithmetic", "linear"} <= set(domains), name
    metrics = read(runs / "rl" / "stages" / "code" / "metrics.json")["log_history"]
    assert any("rewards/code_tests/mean" in entry for entry in metrics)  # the code stage scored code
    recipe = read(runs / "rl" / "signal.json")["cost"]
    assert {"train:math-16k", "train:math-32k", "train:code"} <= set(recipe["phases_seconds"])


@pytest.mark.slow
def test_the_rl_recipe_on_two_processes(runs, tmp_path):
    """recipes/rl.yaml's three stages under the ZeRO-2 launch, from the in-process SFT run: two-process SFT is the
    same distributed code on any recipe, and test_launch and test_multinode run it."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    data = write_data(tmp_path / "data")
    out = tmp_path / "rl"
    rl = zero2_launch("-m", "ssp", "rl", str(RL_RECIPE), *rl_overrides(str(runs / "sft"), data, out))
    result = subprocess.run(rl, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    cost = read(out / "cost.json")
    assert cost["processes"] == 2 and cost["distributed_type"] == "DEEPSPEED"
    assert list(read(out / "signal.json")["evaluations"]) == ["initial", "math-16k", "math-32k", "code"]
    assert result.stdout.count("Test split, before RL and after each stage") == 1  # written once, by the main rank
    folders = [out / "stages" / name / "model" for name in ("math-16k", "math-32k", "code")]
    assert_context_and_stops(folders, AutoTokenizer.from_pretrained(runs / "sft" / "spectrum"))
