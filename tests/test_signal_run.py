"""The signal stage through the CLI: a two-stage curriculum on a tiny model, and malformed stage entries."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssp.cli import main
from ssp.config import RecipeError, RLSection, load_recipe
from ssp.rewards import REWARDS
from ssp.rewards.extract import completion_text
from ssp.signal.config import TRANSLATED, build_mgpo_config, passed_through
from ssp.signal.curriculum import resolve_stages
from ssp.signal.run import resolve_initial_model

REPO = Path(__file__).resolve().parents[1]
DEMO_RL = REPO / "recipes" / "demo" / "rl.yaml"
SMALL = [
    "task.train_size=16",
    "task.test_size=2",
    "rl.per_device_train_batch_size=8",
    "rl.num_generations=4",
    "rl.max_completion_length=8",
    "rl.logging_steps=1",
    "eval.sampling.n=4",
    "eval.sampling.max_new_tokens=8",
    "eval.ks=[1,4]",
]
TWO_STAGES = "rl.stages=[{name: first, max_steps: 2, learning_rate: 1.0e-2}, {name: second, max_steps: 1, learning_rate: 0.0, max_completion_length: 6}]"  # noqa: E501


@pytest.mark.parametrize(
    "stages,message",
    [
        ("[3]", "rl.stages.0: expected a mapping, got int 3"),
        ("[{max_steps: 3}]", "rl.stages.0.name: required"),
        ("[{name: a}, {name: a}]", "rl.stages.1.name: 'a' is used by an earlier stage"),
        ("[{name: a}, {name: b, max_stepz: 3}]", "unknown key rl.stages.1.max_stepz"),
        ("[{name: a, max_steps: lots}]", "rl.stages.0.max_steps: expected an integer, got str 'lots'"),
        ("[{name: a, data: [{path: ./missing.jsonl}]}]", "rl.stages.0.data.0.path: file not found: ./missing.jsonl"),
        ("[{name: a, rewards: {nope: 1.0}}]", "rl.stages.0.rewards: unknown reward 'nope'"),
        ("[{name: 'a/b'}]", "rl.stages.0.name: required; letters, digits, - and _ only"),
        ("[{name: a, stages: []}]", "unknown key rl.stages.0.stages"),
    ],
)
def test_malformed_stage_is_a_one_line_error(stages, message, tmp_path, capsys, tiny_model_dir):
    model = f"model.name_or_path={tiny_model_dir}"
    with pytest.raises(RecipeError) as info:
        resolve_stages(load_recipe(DEMO_RL, [model, f"rl.stages={stages}"]).rl)
    assert message in str(info.value) and "\n" not in str(info.value)
    out = tmp_path / "run"
    assert main(["rl", str(DEMO_RL), f"output_dir={out}", model, f"rl.stages={stages}"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "override,message",
    [
        ("rl.trl={not_a_field: 1}", "unknown key rl.trl.not_a_field: not a field of trl.GRPOConfig"),
        (
            "rl.trl={num_generations: 4}",
            "rl.trl.num_generations duplicates rl.num_generations: set it once, as rl.num_generations",
        ),
        ("rl.trl={warmup_steps: 3}", "rl.trl.warmup_steps: ssp sets trl.GRPOConfig.warmup_steps itself"),
        (
            f"{TWO_STAGES[:-1]}, {{name: third, trl: {{mgpo_lambda: 2}}}}]",
            "rl.stages.2.trl.mgpo_lambda duplicates rl.stages.2.mgpo_lambda",
        ),
    ],
)
def test_rl_trl_keys_are_checked_before_the_run_folder(override, message, tmp_path, capsys, tiny_model_dir):
    """Against TRL's GRPOConfig when the stage starts: loading a recipe does not import TRL."""
    model = f"model.name_or_path={tiny_model_dir}"
    resolve_stages(load_recipe(DEMO_RL, [model, override]).rl)
    out = tmp_path / "run"
    assert main(["rl", str(DEMO_RL), f"output_dir={out}", model, override]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_every_rl_key_reaches_trl_under_its_name_or_through_a_translation():
    """A key named like a GRPOConfig field passes unchanged; the others are translated or are ssp's own."""
    own = {"data", "trl", "stages", "difficulty_filter"}  # the filter runs before TRL
    keys = {f.name for f in dataclasses.fields(RLSection)}
    assert keys == set(passed_through()) | set(TRANSLATED) | own
    args = build_mgpo_config(RLSection(learning_rate=0.25, top_k=3, mgpo_lambda=0.5, trl={"num_iterations": 2}),
                             Path("stage"), "run", 7)  # fmt: skip
    assert (args.learning_rate, args.top_k, args.mgpo_lambda, args.num_iterations) == (0.25, 3, 0.5, 2)
    assert (args.seed, args.run_name, args.output_dir) == (7, "run", str(Path("stage") / "checkpoints"))


def test_stages_inherit_and_override_the_rl_section(tiny_model_dir):
    recipe = load_recipe(DEMO_RL, [f"model.name_or_path={tiny_model_dir}", TWO_STAGES, "rl.mgpo_lambda=0.5"])
    (first_name, first), (second_name, second) = resolve_stages(recipe.rl)
    assert (first_name, second_name) == ("first", "second")
    assert (first.max_steps, second.max_steps) == (2, 1)
    assert second.max_completion_length == 6 and first.max_completion_length == 64
    assert first.mgpo_lambda == second.mgpo_lambda == 0.5
    assert [s.path for s in second.data] == ["synthetic"]


def test_without_stages_there_is_one_named_main(tiny_model_dir):
    recipe = load_recipe(DEMO_RL, [f"model.name_or_path={tiny_model_dir}"])
    assert [name for name, _ in resolve_stages(recipe.rl)] == ["main"]


def test_initial_model_may_be_a_spectrum_run_folder(tmp_path, tiny_model_dir):
    (tmp_path / "run" / "spectrum").mkdir(parents=True)
    (tmp_path / "run" / "spectrum" / "config.json").write_text("{}")
    assert resolve_initial_model(str(tmp_path / "run")) == str(tmp_path / "run" / "spectrum")
    assert resolve_initial_model(str(tiny_model_dir)) == str(tiny_model_dir)


def even_length(completions, **kwargs):
    """An untrained model never writes \\boxed{}; this reward varies within groups, so steps have gradients."""
    return [float(len(completion_text(c)) % 2 == 0) for c in completions]


@pytest.mark.slow
def test_two_stage_curriculum_hands_the_model_on(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(REWARDS, "even_length", even_length)
    out = tmp_path / "run"
    rewards = ["rl.rewards={even_length: 1.0, boxed_match: 0.5}", "rl.data.0.reward=even_length"]
    assert (
        main(
            [
                "rl",
                str(DEMO_RL),
                f"output_dir={out}",
                f"model.name_or_path={tiny_model_dir}",
                *SMALL,
                *rewards,
                TWO_STAGES,
            ]
        )
        == 0
    )
    initial = load_file(tiny_model_dir / "model.safetensors")
    first = load_file(out / "stages" / "first" / "model" / "model.safetensors")
    second = load_file(out / "stages" / "second" / "model" / "model.safetensors")
    assert any(not torch.equal(initial[k], first[k]) for k in initial)  # the first stage trained
    # the second stage (learning rate 0) started from the first stage's final model, not from the initial one
    assert all(torch.equal(first[k], second[k]) for k in first)
    for name in ("first", "second"):
        stage = out / "stages" / name
        assert (stage / "model" / "config.json").is_file() and (stage / "model" / "tokenizer.json").is_file()
        metrics = json.loads((stage / "metrics.json").read_text())
        assert metrics["tokens_generated"] > 0
        assert any("mgpo/weight_mean" in entry for entry in metrics["log_history"])
        evaluation = json.loads((stage / "eval.json").read_text())
        assert 0 <= evaluation["pass@1"] <= evaluation["pass@4"] <= 1
    # the second stage's completions were capped at its own max_completion_length
    lengths = [
        e["completions/max_length"]
        for e in json.loads((out / "stages/second/metrics.json").read_text())["log_history"]
        if "completions/max_length" in e
    ]
    assert lengths and max(lengths) <= 6
    signal = json.loads((out / "signal.json").read_text())
    assert list(signal["evaluations"]) == ["initial", "first", "second"]
    cost = json.loads((out / "cost.json").read_text())
    assert cost["tokens_generated"] >= sum(signal["stages"][s]["tokens_generated"] for s in ("first", "second"))
    assert {"train:first", "train:second", "eval"} <= set(cost["phases_seconds"])


@pytest.mark.slow
def test_ssp_rl_with_lora_trains_adapters_and_saves_a_plain_merged_model(tmp_path, tiny_model_dir, monkeypatch):
    """`model.lora` through `ssp rl` itself: the stage trains adapters on the initial model and saves the merged
    model, a plain folder whose only changed weights are the adapted projections; a bad module name is one line."""
    monkeypatch.setitem(REWARDS, "even_length", even_length)
    out = tmp_path / "run"
    rewards = ["rl.rewards={even_length: 1.0}", "rl.data.0.reward=even_length", "rl.max_steps=2"]
    lora = ["model.lora={enabled: true, r: 4, target_modules: [q_proj, v_proj]}", "rl.learning_rate=1.0e-2"]
    args = ["rl", str(DEMO_RL), f"output_dir={out}", f"model.name_or_path={tiny_model_dir}", *SMALL, *rewards]
    assert main([*args, *lora]) == 0
    model = out / "stages" / "main" / "model"
    assert not {"adapter_model.safetensors", "adapter_config.json"} & {p.name for p in model.iterdir()}
    merged, initial = load_file(model / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert merged.keys() == initial.keys()
    changed = {name for name in initial if not torch.equal(merged[name], initial[name])}
    assert changed and all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in changed)
    bad_lora = "model.lora={enabled: true, target_modules: [nope]}"
    bad = [*args[:2], f"output_dir={tmp_path / 'bad'}", *args[3:], bad_lora]
    assert main(bad) == 2 and not (tmp_path / "bad").exists()
