"""Loading causal LMs and tokenizers, and building the embedded tiny model.

A tiny model is built once, saved as an ordinary Hugging Face folder and then loaded back through
`load_model` / `load_tokenizer` like any hub model, so the demo exercises the same code path as a real run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# Special tokens of the tiny tokenizer. The end-of-turn token is the EOS, so generation stops after one answer.
BOS, EOT, PAD, USER, ASSISTANT, SYSTEM = "<|bos|>", "<|end|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>"

# `{% generation %}` marks the assistant span so TRL's assistant_only_loss also works with this template.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}" + SYSTEM + "{{ message['content'] }}" + EOT + "{% endif %}"
    "{% if message['role'] == 'user' %}" + USER + "{{ message['content'] }}" + EOT + "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    + ASSISTANT
    + "{% generation %}{{ message['content'] }}"
    + EOT
    + "{% endgeneration %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


@dataclass
class TinyModelSpec:
    """Shape of the embedded Llama-style model (about 1M parameters at the defaults)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    vocab_size: int = 128  # a target for BPE training; the real size is what the trainer ends up with


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE on `texts`; every digit stays its own token so numbers are spelled out."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, EOT, USER, ASSISTANT, SYSTEM]
    # No initial_alphabet: the full 256-byte alphabet would bloat the vocabulary with bytes the task never uses.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOT, pad_token=PAD, padding_side="left"
    )
    wrapped.chat_template = TINY_CHAT_TEMPLATE
    return wrapped


def build_tiny_model(out_dir: str | Path, texts: Iterable[str], spec: TinyModelSpec, seed: int) -> Path:
    """Train a tokenizer on `texts`, initialise a Llama-style model from `seed`, and save both to `out_dir`."""
    out_dir = Path(out_dir)
    tokenizer = train_tiny_tokenizer(texts, spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bf16_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_dtype(dtype: str) -> torch.dtype:
    """`auto` is bf16 on a GPU that supports it and float32 elsewhere (CPU training in bf16 is slow and lossy)."""
    if dtype == "auto":
        if bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_tokenizer(name_or_path: str | Path, chat_template: str | None = None):
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if chat_template:
        tokenizer.chat_template = chat_template
    if tokenizer.chat_template is None:
        raise ValueError(f"tokenizer of {name_or_path} has no chat template; set model.chat_template in the recipe")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str | Path, dtype: str = "auto", device: str | None = None, config_overrides=None):
    """A causal LM in `dtype`; `config_overrides` replace fields of its config (e.g. max_position_embeddings)."""
    overrides = config_overrides or {}
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=resolve_dtype(dtype), **overrides)
    if device is not None:
        model.to(device)
    return model


def is_model_dir(path: str | Path) -> bool:
    """A local Hugging Face model folder: a config plus safetensors weights."""
    path = Path(path)
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def looks_like_local_path(name_or_path: str) -> bool:
    """Hub ids are `org/name`; anything that starts like a filesystem path, or exists, is treated as local."""
    return name_or_path.startswith((".", "/", "~")) or os.path.exists(name_or_path) or name_or_path.count("/") > 1


def read_architecture(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())
