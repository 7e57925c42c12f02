"""The tiny models ssp builds itself: the demo's Llama-style model, and a Qwen2 model shaped like the real target.

Both are trained or initialised here, saved as ordinary Hugging Face folders and loaded back through
`ssp.models` like any hub checkpoint.

- `build_tiny_model`: the embedded default (about 1M parameters), with a BPE tokenizer trained on the task's text
  whose end-of-turn token is the EOS.
- `build_qwen_shaped_model`: a random `Qwen2ForCausalLM` with Qwen2.5-Math-1.5B's context (4,096 positions, RoPE
  theta 10,000), its chat template and a locally trained tokenizer that loads as the `Qwen2Tokenizer` a real
  checkpoint gets, EOS `<|endoftext|>` while turns end in `<|im_end|>`: the shape of the bugs a real run hits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

if TYPE_CHECKING:
    from ssp.config import TinyModelSpec  # the recipe's `model.tiny`

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


# Qwen2.5-Math's chat template (its tokenizer_config.json): ChatML turns that end in `<|im_end|>`, a default system
# prompt, and tool calls. Its EOS is `<|endoftext|>`, not the end-of-turn token.
QWEN_MATH_CHAT_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] }}{%- else %}"
    "{{- 'Please reason step by step, and put your final answer within \\\\boxed{}.' }}{%- endif %}"
    '{{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are '
    'provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}'
    '{%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}'
    '{{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within '
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n" }}'
    "{%- else %}{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}"
    "{{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within "
    "\\\\boxed{}.<|im_end|>\\n' }}"
    "{%- endif %}{%- endif %}"
    "{%- for message in messages %}"
    '{%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}'
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == \"assistant\" %}{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}"
    "{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}"
    '{%- elif message.role == "tool" %}'
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Qwen2's pre-tokenizer (transformers' Qwen2Tokenizer): a tokenizer trained with it loads back unchanged through
# AutoTokenizer for a `qwen2` model, which rebuilds the pipeline from the vocabulary and merges.
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"


@dataclass
class QwenShape:
    """A Qwen2 model shaped like Qwen2.5-Math-1.5B (4,096 positions, RoPE theta 10,000, grouped-query attention,
    tied embeddings), at any size; random weights. The real model: hidden 1536, 28 layers, 12 heads, 2 KV heads,
    FFN 8960, vocabulary 151,936."""

    hidden_size: int = 128  # head size 32: the smallest vLLM's CPU attention takes
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    vocab_size: int | None = None  # None: the tokenizer's size; the real model pads its vocabulary to 151,936


def train_chatml_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE with Qwen2's normaliser and pre-tokenizer and its three special tokens, loaded back as the
    `Qwen2Tokenizer` a Qwen2.5 checkpoint gets (EOS and padding `<|endoftext|>`, turns end in `<|im_end|>`)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes, as in the real vocabulary
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=ENDOFTEXT, pad_token=ENDOFTEXT, unk_token=None, padding_side="right"
    )
    wrapped.chat_template = QWEN_MATH_CHAT_TEMPLATE
    return wrapped


def build_qwen_shaped_model(
    out_dir: str | Path, texts: Iterable[str], shape: QwenShape, seed: int, dtype: torch.dtype = torch.float32
) -> Path:
    """A randomly initialised `Qwen2ForCausalLM` with a locally trained ChatML tokenizer, saved like a hub
    checkpoint: the config says `qwen2`, the generation config stops at `<|endoftext|>` only (as the base model's
    does), and the tokenizer is what `AutoTokenizer` gives for it."""
    out_dir = Path(out_dir)
    # The template's default system prompt is in every conversation; the real vocabulary has its words.
    default_system = "Please reason step by step, and put your final answer within \\boxed{}."
    tokenizer = train_chatml_tokenizer([*texts, default_system, "system user assistant"])
    tokenizer.save_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)  # the Qwen2Tokenizer a qwen2 checkpoint loads with
    config = Qwen2Config(
        vocab_size=shape.vocab_size or len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rope_theta=shape.rope_theta,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.to(dtype).save_pretrained(out_dir)  # bf16 for the full-size shape, as the hub checkpoint is stored
    tokenizer.save_pretrained(out_dir)
    return out_dir
