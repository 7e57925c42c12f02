"""ssp.pretrain: the corpus states only true arithmetic, pretraining lowers the loss, and the pretrained base is
built once per machine, is the same for every run seed, and becomes a run's OUT/base."""

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import PartialState
from safetensors.torch import load_file

import ssp.pretrain as pretrain
from ssp.config import RecipeError, TinyModelSpec, TinyPretraining, load_recipe
from ssp.pretrain import corpus_line, pretrain_key, pretrained_tiny_model
from ssp.runs import materialize_base_model

DEMO_SFT = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "sft.yaml"
SMALL = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}


def small_spec(steps: int = 3) -> TinyModelSpec:
    return TinyModelSpec(**SMALL, pretrain=TinyPretraining(steps=steps, batch_size=8, length=64))


def statement_holds(statement: str) -> bool:
    """Check one corpus statement independently of how it was generated."""
    if re.fullmatch(r"d=-?\d+-\d+=-?\d+\.", statement):  # a solution's step: d=16-8=8.
        first, second, step = map(int, re.fullmatch(r"d=(-?\d+)-(\d+)=(-?\d+)\.", statement).groups())
        return first - second == step
    if statement.startswith("d="):
        step, terms = re.fullmatch(r"d=(\d+)\. (.+)\.", statement).groups()
        values = [int(t) for t in terms.split(", ")]
        return all(b - a == int(step) for a, b in zip(values, values[1:], strict=False))
    if "x-" in statement:
        a, c, k = map(int, re.fullmatch(r"(\d+)x-(\d+)x=(-?\d+)x\.", statement).groups())
        return a - c == k
    if statement.startswith("x="):
        numerator, divisor, quotient = re.fullmatch(r"x=(-?\d+)/\(?(-?\d+)\)?=(-?\d+)\.", statement).groups()
        return int(numerator) == int(divisor) * int(quotient)
    sides = statement.rstrip(".").split("=")
    values = [eval(side) for side in sides]  # only digits and + - * ( ): checked by the pattern below
    if re.fullmatch(r"\d+=\d+\*\d+\+\d+", statement.rstrip(".")):  # total=quotient*m+remainder, remainder < m
        _, m, remainder = map(int, re.findall(r"\d+", statement)[1:])
        return values[0] == values[1] and remainder < m
    return len(set(values)) == 1


def test_every_corpus_statement_is_true():
    rng = random.Random(1)
    statements = []
    for _ in range(300):
        line = corpus_line(rng)
        assert re.fullmatch(r"[0-9x+\-*/=(),. d]+", line), line
        statements += re.findall(r"d=\d+\. [\d, ]+\.|[^ ]+\.", line)
    kinds = {re.sub(r"\d+", "9", s)[:4] for s in statements}
    assert len(kinds) >= 7  # every kind of statement appears
    assert {"9+(9", "d=9-", "x=9/"} <= kinds  # and the steps of solutions: a progression's term, d, x
    assert all(statement_holds(s) for s in statements), [s for s in statements if not statement_holds(s)][:3]


def test_pretraining_lowers_the_loss(tmp_path):
    out = pretrain.pretrain_tiny_model(tmp_path / "model", small_spec(steps=40), seed=0)
    losses = json.loads((out / "pretraining.json").read_text())["loss"]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0]


@pytest.mark.parametrize("bfloat16", [False, True])
def test_the_precision_of_the_loop_is_recorded_and_keys_the_cache(tmp_path, monkeypatch, bfloat16):
    monkeypatch.setattr(pretrain, "bfloat16_matmuls", lambda: bfloat16)
    out = pretrain.pretrain_tiny_model(tmp_path / "model", small_spec(steps=2), seed=0)
    record = json.loads((out / "pretraining.json").read_text())
    assert record["bfloat16_autocast"] is bfloat16
    assert all(torch.isfinite(torch.tensor(record["loss"])))
    saved = load_file(str(out / "model.safetensors"))
    assert {tensor.dtype for tensor in saved.values()} == {torch.float32}  # autocast leaves the weights float32
    assert "attn_implementation" not in (out / "config.json").read_text()  # eager only while pretraining
    key = pretrain_key(small_spec(), 0)
    monkeypatch.setattr(pretrain, "bfloat16_matmuls", lambda: not bfloat16)
    assert pretrain_key(small_spec(), 0) != key


def test_the_base_is_built_once_and_keyed_by_its_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("SSP_CACHE", str(tmp_path))
    first = pretrained_tiny_model(small_spec())
    assert first.parent == tmp_path and (first / "model.safetensors").is_file()
    monkeypatch.setattr(pretrain, "pretrain_tiny_model", lambda *a, **k: pytest.fail("pretrained twice"))
    assert pretrained_tiny_model(small_spec()) == first
    assert pretrain_key(small_spec(steps=4), 0) != pretrain_key(small_spec(steps=3), 0)
    assert pretrain_key(TinyModelSpec(**{**SMALL, "hidden_size": 64}), 0) != pretrain_key(TinyModelSpec(**SMALL), 0)


def test_a_run_starts_from_the_pretrained_base_whatever_its_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("SSP_CACHE", str(tmp_path / "cache"))
    tiny = ",".join(f"{k}: {v}" for k, v in SMALL.items())
    bases = []
    for seed in (0, 1):
        recipe = load_recipe(
            DEMO_SFT,
            [f"model.tiny={{{tiny}}}", "model.tiny.pretrain={steps: 3, batch_size: 8, length: 64}", f"seed={seed}"],
        )
        base = materialize_base_model(recipe, [], tmp_path / f"run{seed}", PartialState())
        bases.append(load_file(f"{base}/model.safetensors"))
        assert (tmp_path / f"run{seed}" / "base" / "pretraining.json").is_file()
    cached = load_file(str(pretrained_tiny_model(recipe.model.tiny) / "model.safetensors"))
    for name, weight in cached.items():
        assert torch.equal(bases[0][name], weight) and torch.equal(bases[1][name], weight)


def test_negative_pretraining_steps_are_a_one_line_error():
    with pytest.raises(RecipeError, match=r"model\.tiny\.pretrain\.steps.*>= 0"):
        load_recipe(DEMO_SFT, ["model.tiny.pretrain.steps=-1"])


BUILD = """
import sys
import ssp.pretrain as pretrain
from ssp.config import TinyModelSpec, TinyPretraining

real = pretrain.pretrain_tiny_model


def counted(*args, **kwargs):
    with open(sys.argv[1], "a") as log:
        log.write("built\\n")
    return real(*args, **kwargs)


pretrain.pretrain_tiny_model = counted
spec = TinyModelSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     pretrain=TinyPretraining(steps=3, batch_size=8, length=64))
print(pretrain.pretrained_tiny_model(spec))
"""


def test_runs_starting_together_build_the_base_once(tmp_path):
    script, log = tmp_path / "build.py", tmp_path / "builds.log"
    script.write_text(BUILD)
    env = {**os.environ, "SSP_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, str(script), str(log)], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    folders = {run.communicate(timeout=300)[0].strip().splitlines()[-1] for run in runs}
    assert [run.returncode for run in runs] == [0, 0]
    assert log.read_text().splitlines() == ["built"]
    (folder,) = folders
    assert (Path(folder) / "model.safetensors").is_file()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".writing")] == []


def test_an_interrupted_build_is_cleared_and_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("SSP_CACHE", str(tmp_path))
    target = tmp_path / f"tiny-pretrained-{pretrain_key(small_spec(), 0)}"
    leftover = target.with_name(f".{target.name}.writing")
    leftover.mkdir()
    (leftover / "model.safetensors").write_text("half written")
    assert pretrained_tiny_model(small_spec()) == target
    assert not leftover.exists() and load_file(str(target / "model.safetensors"))
