"""model.context: set once, written into the initial model's files, checked against every token budget first."""

import pytest
import torch
from test_spectrum_run import DEMO, SMALL
from transformers import AutoConfig

from ssp.cli import main
from ssp.config import RecipeError, load_recipe
from ssp.models import context_of, load_model, prepare_initial_model, with_context
from ssp.signal.curriculum import resolve_stages
from ssp.signal.run import check_context_budget as check_rl_budget
from ssp.spectrum.run import check_context_budget

NO_CHANGE = {"max_position_embeddings": None, "rope_theta": None, "rope_scaling": None, "overrides": {}}


def test_with_context_sets_positions_theta_and_scaling(qwen_model_dir):
    config = AutoConfig.from_pretrained(qwen_model_dir)
    longer = with_context(config, 40960, 300000)
    assert context_of(longer) == (40960, {"rope_theta": 300000.0, "rope_type": "default"})
    yarn = with_context(config, 16384, None, {"rope_type": "yarn", "factor": 4.0})
    # scaled RoPE stretches the positions the model was trained on: the config's 4,096 unless given
    assert context_of(yarn)[1] == {"rope_theta": 10000.0, "rope_type": "yarn", "factor": 4.0,
                                   "original_max_position_embeddings": 4096}  # fmt: skip
    assert with_context(config).to_dict() == config.to_dict()
    assert with_context(config, overrides={"attention_dropout": 0.1}).attention_dropout == 0.1


def test_the_initial_model_is_written_with_the_context_and_loads_with_it(qwen_model_dir, tmp_path):
    context = {**NO_CHANGE, "max_position_embeddings": 40960, "rope_theta": 300000}
    assert prepare_initial_model(qwen_model_dir, tmp_path / "base", context=context, chat_template=None)
    model = load_model(tmp_path / "base")
    assert model.config.max_position_embeddings == 40960
    head = model.config.hidden_size // model.config.num_attention_heads
    expected = 1.0 / (300000.0 ** (torch.arange(0, head, 2, dtype=torch.float32) / head))
    assert torch.allclose(model.model.rotary_emb.inv_freq, expected)  # RoPE itself uses the new theta
    original = load_model(qwen_model_dir)
    for (name, a), (_, b) in zip(original.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # only the config changed
    assert not prepare_initial_model(tmp_path / "base", tmp_path / "again", context=context, chat_template=None)
    assert not (tmp_path / "again").exists()


def test_token_budgets_beyond_the_context_are_refused_before_anything_is_written(tmp_path, capsys):
    recipe = load_recipe(DEMO, [f"output_dir={tmp_path / 'run'}", *SMALL])
    with pytest.raises(RecipeError, match="sft.max_length: 160 tokens do not fit the model's context of 100"):
        check_context_budget(recipe, 100)
    short = load_recipe(DEMO, [f"output_dir={tmp_path / 'run'}", *SMALL, "sft.max_length=8"])
    with pytest.raises(RecipeError, match="probe.sampling.max_new_tokens: 16 new tokens plus the prompt do not fit"):
        check_context_budget(short, 16)
    check_context_budget(recipe, 512)
    assert "warning: probing samples at most 16 new tokens but SFT trains on sequences of up to 160" in (
        capsys.readouterr().err
    )
    out = tmp_path / "run"
    assert main(["sft", str(DEMO), f"output_dir={out}", *SMALL, "model.context.max_position_embeddings=100"]) == 2
    assert "do not fit the model's context of 100 positions" in capsys.readouterr().err
    assert not out.exists()


def test_rl_completions_beyond_the_context_are_refused(tiny_model_dir, tmp_path):
    from test_signal_run import DEMO_RL

    recipe = load_recipe(DEMO_RL, [f"output_dir={tmp_path}", f"model.name_or_path={tiny_model_dir}"])
    stages = resolve_stages(recipe.rl)
    with pytest.raises(RecipeError, match="rl.max_completion_length: 64 tokens plus the prompt do not fit"):
        check_rl_budget(recipe, stages, 64)
    check_rl_budget(recipe, stages, 512)


def test_a_bad_context_is_a_one_line_error(tmp_path):
    with pytest.raises(RecipeError, match="model.context.rope_scaling: needs a rope_type"):
        load_recipe(DEMO, [f"output_dir={tmp_path}", "model.context.rope_scaling={factor: 2.0}"])
    with pytest.raises(RecipeError, match="model.context.max_position_embeddings: must be >= 1"):
        load_recipe(DEMO, [f"output_dir={tmp_path}", "model.context.max_position_embeddings=0"])
