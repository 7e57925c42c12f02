"""`ssp plan`: parameters, FLOPs and memory from the formulas of docs/plan.md, checked against numbers computed
here; the shipped recipes fit 8 x A100-80GB, and the configuration they replaced does not."""

import json

import pytest
import torch
from real_recipes import RL_RECIPE, SFT_RECIPE
from transformers import Qwen2Config, Qwen2ForCausalLM

from ssp.cli import main
from ssp.config import RecipeError
from ssp.plan import KNOWN_ARCHITECTURES, Assumptions, plan_recipes
from ssp.plan.formulas import find_architecture, generation_flops

QWEN = KNOWN_ARCHITECTURES["Qwen/Qwen2.5-Math-1.5B"]
PAIR = [str(SFT_RECIPE), str(RL_RECIPE)]


def test_the_architecture_numbers_match_a_real_qwen2_model():
    config = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    assert QWEN.parameters == sum(p.numel() for p in model.parameters()) == 1_543_714_304
    assert QWEN.kv_bytes_per_token == 28 * 2 * 2 * 128 * 2  # 28 KiB a token, as DESIGN.md measures
    assert generation_flops(QWEN, 10, prompt=0, completion=0) == 10 * 2 * QWEN.parameters


def test_the_architecture_comes_from_a_model_folder(qwen_model_dir):
    arch = find_architecture(str(qwen_model_dir), {})
    assert (arch.hidden_size, arch.num_layers, arch.max_position_embeddings) == (128, 2, 4096)
    assert find_architecture("nobody/unknown-model", {}) is None


def stages(plan):
    return {stage.name: stage for entry in plan["recipes"] for stage in entry["stages"]}


def test_the_shipped_recipes_fit_on_one_node_of_a100s():
    plan = plan_recipes(PAIR, Assumptions())
    assert plan["total"]["fits"], [s.problems for s in stages(plan).values()]
    names = stages(plan)
    assert set(names) == {"sft", "probe", "eval", "rl:math-16k", "rl:math-32k", "rl:code"}
    assert plan["recipes"][1]["context"] == 40960  # the RL recipe is planned on the SFT recipe's model
    rl = names["rl:math-32k"]
    # 200 steps x 1,024 completions of 50% x 32,768 tokens, on 8 GPUs
    assert rl.tokens_generated == pytest.approx(200 * 1024 * 16384)
    every = [stage for entry in plan["recipes"] for stage in entry["stages"]]
    assert len(every) == 7 and plan["total"]["device_hours"] == pytest.approx(sum(s.device_hours for s in every))


def test_the_difficulty_filter_is_planned_as_one_sampling_pass_before_its_stage():
    plan = plan_recipes([*PAIR, "rl.stages.1.difficulty_filter=true"], Assumptions(problems=1000))
    names = [stage.name for stage in plan["recipes"][1]["stages"]]
    assert names == ["rl:math-16k", "filter:math-32k", "rl:math-32k", "rl:code", "eval"]
    # 1,000 prompts x 16 generations (the stage's num_generations) x 50% of its 32,768-token completions
    assert stages(plan)["filter:math-32k"].tokens_generated == pytest.approx(1000 * 16 * 16384)
    assert stages(plan)["eval"].notes[0].startswith("4 model(s)")  # the initial model and three stages, as before


def test_the_replaced_rl_configuration_does_not_fit_and_says_why():
    old = ["rl.per_device_train_batch_size=8", "rl.gradient_accumulation_steps=16",
           *[f"rl.stages.{i}.trl={{steps_per_generation: 16}}" for i in range(3)],
           *[f"rl.stages.{i}.per_device_train_batch_size=8" for i in (1, 2)],
           *[f"rl.stages.{i}.gradient_accumulation_steps=16" for i in (1, 2)],
           "rl.trl={vllm_gpu_memory_utilization: 0.45}"]  # fmt: skip
    plan = plan_recipes([str(SFT_RECIPE), str(RL_RECIPE), *old], Assumptions())
    stage = stages(plan)["rl:math-32k"]
    assert not stage.fits and not plan["total"]["fits"]
    kv = next(problem for problem in stage.problems if "KV cache" in problem)
    assert "128 x 33,068 tokens = 113.0 GiB" in kv and "trl.steps_per_generation" in kv


def test_sft_beyond_the_base_context_is_flagged():
    plan = plan_recipes([str(SFT_RECIPE), "model.context.max_position_embeddings=null"], Assumptions())
    sft = stages(plan)["sft"]
    assert not sft.fits and "exceed the model's context of 4,096 positions" in " ".join(sft.problems)


def test_the_command_prints_a_table_or_json_and_exits_1_when_a_stage_does_not_fit(capsys):
    assert main(["plan", *PAIR]) == 0
    out = capsys.readouterr().out
    assert "| VibeThinker report | SFT + RL |" in out and "3,900 (H800)" in out
    assert main(["plan", *PAIR, "--json", "--device", "H800"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["device"] == "H800" and plan["report"]["device_hours"] == 3900
    assert {s["name"] for s in plan["recipes"][0]["stages"]} == {"sft", "probe", "eval"}
    assert main(["plan", str(SFT_RECIPE), "sft.gradient_checkpointing=false", "--device", "A100-40GB"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_a_model_of_unknown_shape_is_a_one_line_error(capsys):
    with pytest.raises(RecipeError, match="cannot tell the architecture of model.name_or_path './runs/sft'"):
        plan_recipes([str(RL_RECIPE)], Assumptions())
    assert main(["plan", "sft.max_steps=3"]) == 2
    assert "comes before any recipe" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["train", "probe", "test"])
def test_a_data_file_the_stages_cannot_read_is_the_same_one_line_error(tmp_path, capsys, split):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"problem": "\xff"}\n')
    assert main(["plan", str(SFT_RECIPE), f"data.{split}.0.path={bad}"]) == 2
    not_utf8 = "line 1 is not UTF-8 text (byte 0xff at column 14); convert the file to UTF-8"
    assert capsys.readouterr().err.strip().splitlines() == [f"ssp: error: data.{split}.0: {bad} {not_utf8}"]
