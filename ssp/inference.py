"""Run a trained model with the recommended settings: `InferenceEngine(model_path).generate(prompt, preset=...)`.

The engine loads any local or hub causal LM (bf16 and `device_map="auto"` on GPU, float32 on CPU) through a
generation backend (`ssp.generation.backends`), applies its chat template and samples with a preset of
`ssp.generation.presets.PRESETS` (any field overridable). `reasoning_prompt` wraps a problem with the instruction to
reason step by step and put the final answer in `\\boxed{}`, in English (the report's evaluation suffix) or Chinese.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssp.config import RecipeError
from ssp.data.benchmarks import MATH_INSTRUCTION
from ssp.generation.backends import get_backend
from ssp.generation.presets import resolve_sampling
from ssp.rewards.math_answers import extract_answer

REASONING_INSTRUCTIONS = {
    "en": MATH_INSTRUCTION,
    "zh": "请一步一步地推理，并将最终答案写在 \\boxed{} 中。",
}


def reasoning_prompt(problem: str, language: str = "en") -> str:
    """`problem` followed by the instruction to reason step by step and box the final answer."""
    if language not in REASONING_INSTRUCTIONS:
        raise RecipeError(f"unknown language {language!r} (known: {', '.join(REASONING_INSTRUCTIONS)})")
    return f"{problem.rstrip()}\n{REASONING_INSTRUCTIONS[language]}"


@dataclass
class Completion:
    text: str  # the whole response: the reasoning and the answer
    answer: str | None  # the last \boxed{} of the response; None when there is none
    length: int  # tokens
    truncated: bool  # cut at the token budget or the model's context


class InferenceEngine:
    def __init__(
        self,
        model_path: str | Path,
        backend: str = "transformers",
        dtype: str = "auto",
        chat_template: str | None = None,
        system_prompt: str | None = None,
        tensor_parallel_size: int = 1,
    ):
        self.model_path = str(model_path)
        self.system_prompt = system_prompt
        self.backend = get_backend(
            model_path, backend, dtype=dtype, chat_template=chat_template, tensor_parallel_size=tensor_parallel_size
        )

    def generate(
        self,
        prompt: str | list[dict],
        preset: str = "recommended",
        *,
        reasoning_language: str | None = None,
        seed: int | None = 0,
        **overrides,
    ) -> list[Completion]:
        """`sampling.n` completions (1 with the inference presets) of one prompt: a user message, or a whole
        conversation. `reasoning_language` ("en" / "zh") wraps a string prompt with `reasoning_prompt`; keyword
        arguments override the preset's sampling fields (`temperature=0.7`, `max_new_tokens=512`, ...)."""
        sampling = resolve_sampling(preset, **overrides)
        if isinstance(prompt, str):
            content = reasoning_prompt(prompt, reasoning_language) if reasoning_language else prompt
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            messages.append({"role": "user", "content": content})
        else:
            messages = prompt
        generations = self.backend.generate([messages], sampling, seed=seed, desc="generating")
        return [
            Completion(text, extract_answer(text), length, truncated)
            for text, length, truncated in zip(
                generations.texts[0], generations.lengths[0], generations.truncated[0], strict=True
            )
        ]
