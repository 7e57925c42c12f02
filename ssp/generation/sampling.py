"""Batched sampling with transformers: several prompts per call, `n` return sequences per prompt, stopping at the
EOS or at the chat template's end-of-turn token (`ssp.models.stop_token_ids`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ssp.config import SamplingConfig
from ssp.models import stop_token_ids


@dataclass
class Generations:
    """Completions of each prompt, in prompt order; `truncated` marks samples cut at the token budget."""

    texts: list[list[str]] = field(default_factory=list)
    lengths: list[list[int]] = field(default_factory=list)
    truncated: list[list[bool]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(sum(lengths) for lengths in self.lengths)


def generate_kwargs(sampling: SamplingConfig, greedy: bool = False) -> dict:
    """`model.generate` arguments of a sampling config: greedy at temperature 0, top-k 0 and repetition penalty 1.0
    switched off."""
    kwargs = {"repetition_penalty": sampling.repetition_penalty}
    if greedy or sampling.temperature == 0:
        return {**kwargs, "do_sample": False}
    return {**kwargs, "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
            "top_k": sampling.top_k}  # fmt: skip


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[list[dict]],
    sampling: SamplingConfig,
    greedy: bool = False,
    desc: str = "sampling",
    progress: bool = True,
) -> Generations:
    """Sample `sampling.n` completions for each conversational prompt (one greedy completion if `greedy`)."""
    n = 1 if greedy else sampling.n
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    eos_ids = stop_token_ids(tokenizer, model.generation_config)  # EOS and the chat template's end of turn
    context = getattr(model.config, "max_position_embeddings", None)
    out = Generations()
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    batches = range(0, len(texts), sampling.batch_size)
    for start in tqdm(batches, desc=desc, leave=False, disable=not progress):
        batch = tokenizer(
            texts[start : start + sampling.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        prompt_len = batch["input_ids"].shape[1]
        # Never generate past the model's context; samples cut there count as truncated.
        budget = sampling.max_new_tokens if context is None else min(sampling.max_new_tokens, context - prompt_len)
        if budget < 1:
            raise ValueError(f"prompts of {prompt_len} tokens leave no room in the model's context of {context}")
        output = model.generate(
            **batch,
            max_new_tokens=budget,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos_ids,
            **generate_kwargs(sampling, greedy),
        )
        new_tokens = output[:, prompt_len:]
        for i in range(0, new_tokens.shape[0], n):
            group = new_tokens[i : i + n]
            texts_i, lengths_i, truncated_i = [], [], []
            for row in group.tolist():
                stop = next((j for j, t in enumerate(row) if t in eos_ids), None)
                kept = row if stop is None else row[:stop]
                texts_i.append(tokenizer.decode(kept, skip_special_tokens=True))
                lengths_i.append(len(kept) + (stop is not None))
                truncated_i.append(stop is None)
            out.texts.append(texts_i)
            out.lengths.append(lengths_i)
            out.truncated.append(truncated_i)
    return out
