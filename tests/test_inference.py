import dataclasses

import pytest
import torch

from ssp import inference
from ssp.cli import main
from ssp.config import RecipeError
from ssp.generation.backends import BackendError, TransformersBackend, get_backend
from ssp.generation.presets import PRESETS
from ssp.generation.sampling import Generations
from ssp.inference import Completion, InferenceEngine, reasoning_prompt


def test_reasoning_prompt_in_english_and_chinese():
    assert reasoning_prompt("What is 2+2?") == (
        "What is 2+2?\nLet's think step by step and output the final answer within \\boxed{}."
    )
    assert (
        reasoning_prompt("2+2 等于几？\n", "zh") == "2+2 等于几？\n请一步一步地推理，并将最终答案写在 \\boxed{} 中。"
    )
    with pytest.raises(RecipeError, match=r"^unknown language 'fr' \(known: en, zh\)$"):
        reasoning_prompt("x", "fr")


class ScriptedBackend:
    name = "scripted"

    def __init__(self, text):
        self.text, self.prompts = text, []

    def generate(self, prompts, sampling, **kwargs):
        self.prompts.extend(prompts)
        return Generations([[self.text] * sampling.n], [[7] * sampling.n], [[False] * sampling.n])


def test_engine_wraps_the_problem_and_extracts_the_boxed_answer(monkeypatch):
    backend = ScriptedBackend("2 and 2 make \\boxed{4}.")
    monkeypatch.setattr(inference, "get_backend", lambda *args, **kwargs: backend)
    engine = InferenceEngine("org/model", system_prompt="Be brief.")
    assert engine.generate("What is 2+2?", reasoning_language="zh") == [
        Completion("2 and 2 make \\boxed{4}.", "4", 7, False)
    ]
    assert backend.prompts[-1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": reasoning_prompt("What is 2+2?", "zh")},
    ]
    conversation = [{"role": "user", "content": "hi"}]
    assert len(engine.generate(conversation, "math", n=3)) == 3
    assert backend.prompts[-1] == conversation


def test_engine_on_the_tiny_model_stays_inside_the_context(tiny_model_dir):
    engine = InferenceEngine(tiny_model_dir)
    assert next(engine.backend.model.parameters()).dtype == torch.float32  # on CPU
    messages = [{"role": "user", "content": reasoning_prompt("What is 2+3?")}]
    text = engine.backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_length = len(engine.backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    # A short context keeps running into it with the recommended preset's 40,960-token budget cheap.
    context = prompt_length + 12
    engine.backend.model.config.max_position_embeddings = engine.backend.context = context
    (completion,) = engine.generate("What is 2+3?", reasoning_language="en")
    assert 1 <= completion.length <= 12
    assert completion.truncated == (completion.length == 12)
    again = engine.generate("What is 2+3?", reasoning_language="en")
    assert again == [completion]  # seeded (seed 0 by default)


def test_a_prompt_longer_than_the_context_gives_empty_truncated_samples(tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir)
    long_prompt = [{"role": "user", "content": "1+1 " * 400}]
    sampling = dataclasses.replace(PRESETS["code"], max_new_tokens=4)
    out = backend.generate([long_prompt, [{"role": "user", "content": "2+2?"}]], sampling, progress=False)
    assert out.texts[0] == [""] * 8 and out.lengths[0] == [0] * 8 and out.truncated[0] == [True] * 8
    assert all(length > 0 for length in out.lengths[1])


def test_backend_errors_are_one_line(tmp_path):
    with pytest.raises(BackendError, match=r"^unknown backend 'tgi' \(known: auto, transformers, vllm\)$"):
        get_backend(tmp_path, "tgi")
    with pytest.raises(BackendError, match=f"^model folder not found: {tmp_path}/none$"):
        get_backend(tmp_path / "none")


def test_ssp_generate_prints_the_reasoning_and_the_final_answer(tiny_model_dir, capsys):
    assert main(["generate", "--model", str(tiny_model_dir), "--max-new-tokens", "5", "--n", "2", "What is 2+3?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("=== sample 1 of 2\n") and "=== sample 2 of 2\n" in out
    assert out.count("final answer: (no \\boxed{} answer)\n") == 2  # an untrained model boxes nothing
    assert out.count(" tokens") == 2
