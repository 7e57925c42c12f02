"""Loading causal LMs and tokenizers; the stop tokens and the context every saved model carries.

The tiny models the demo and the tests build (`ssp.tiny_models`) are saved as ordinary Hugging Face folders and
loaded back through `load_model` / `load_tokenizer` like any hub model, so they exercise the code path of a real run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from ssp.files import replace_dir, staging_path


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


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template closes an assistant turn with (`<|im_end|>` in ChatML), or None when
    the template closes turns with plain text. It may differ from the EOS: Qwen2.5's EOS is `<|endoftext|>`."""
    marker = "SSP-END-OF-TURN-PROBE"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}], tokenize=False
        )
    except Exception:  # a template may refuse a conversation ending with the assistant; then there is no answer
        return None
    if not isinstance(text, str) or marker not in text:
        return None
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for token_id in tokenizer(text.split(marker, 1)[1], add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return tokenizer.convert_ids_to_tokens(token_id)
        if tokenizer.convert_ids_to_tokens(token_id).strip("ĊĠ \n"):
            return None  # text before any special token: the turn ends in plain text
    return None


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Every token that ends a completion: the generation config's EOS ids, the tokenizer's EOS and the chat
    template's end-of-turn token, without repeats. Generation stops at the first of them."""
    configured = getattr(generation_config, "eos_token_id", None)
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    turn = end_of_turn_token(tokenizer)
    for token_id in (tokenizer.eos_token_id, None if turn is None else tokenizer.convert_tokens_to_ids(turn)):
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
    return ids


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


def with_context(config, max_position_embeddings=None, rope_theta=None, rope_scaling=None, overrides=None):
    """A copy of a model config with its context replaced: positions, RoPE theta and RoPE scaling (transformers 5
    keeps both in `rope_parameters`), plus any other `overrides`. Rebuilt from its dict, so transformers validates
    the RoPE parameters as it does when loading a checkpoint."""
    data = config.to_dict()
    data.update(overrides or {})
    if max_position_embeddings is not None:
        data["max_position_embeddings"] = max_position_embeddings
    rope = dict(data.get("rope_parameters") or {})
    if rope_scaling is not None:
        # Scaled RoPE stretches the positions the model was trained on: by default, the config's current context.
        trained = getattr(config, "max_position_embeddings", None)
        theta = rope.get("rope_theta", data.get("rope_theta"))
        rope = {"rope_theta": theta, "original_max_position_embeddings": trained, **rope_scaling}
        if rope["rope_type"] not in ("yarn", "llama3", "longrope"):
            rope.pop("original_max_position_embeddings")
    if rope_theta is not None:
        rope["rope_theta"] = float(rope_theta)
    if rope:
        data["rope_parameters"] = rope
        data.pop("rope_theta", None)
        data.pop("rope_scaling", None)
    return type(config).from_dict(data)


def context_of(config) -> tuple[int | None, dict]:
    """(positions, RoPE parameters) of a model config, for comparing and reporting."""
    rope = dict(getattr(config, "rope_parameters", None) or {})
    return getattr(config, "max_position_embeddings", None), rope


def prepare_initial_model(source: str | Path, target: str | Path, *, context: dict, chat_template: str | None) -> bool:
    """Write `source` to `target` with the recipe's context and chat template in its files, and every stop token
    (`stop_token_ids`) in its generation config, so whatever loads a saved model later (training, probing, the
    merge, TRL's vLLM engine, `ssp eval`) sees the same context and stops at the end of the turn. Returns False,
    writing nothing, when `source` already has all of it; the model is loaded and saved again only when something
    changes."""
    stored_template = AutoTokenizer.from_pretrained(str(source)).chat_template
    tokenizer = load_tokenizer(source, chat_template)
    config = AutoConfig.from_pretrained(str(source))
    wanted = with_context(config, **context)
    generation = GenerationConfig.from_pretrained(str(source)) if _has_generation_config(source) else None
    stops = stop_token_ids(tokenizer, generation)
    current = getattr(generation, "eos_token_id", None)
    current = [current] if isinstance(current, int) else list(current or [])
    unchanged = (
        context_of(wanted) == context_of(config)
        and wanted.to_dict() == config.to_dict()
        and current == stops
        and tokenizer.chat_template == stored_template
    )
    if unchanged:
        return False
    model = AutoModelForCausalLM.from_pretrained(str(source), config=wanted, dtype="auto")  # the stored precision
    model.generation_config.eos_token_id = stops
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    # Written beside the target and moved into place: `source` may be `target`, whose weights are still mapped.
    target = Path(target)
    staging = staging_path(target)
    if staging.exists():
        shutil.rmtree(staging)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    del model
    replace_dir(staging, target)
    return True


def _has_generation_config(source: str | Path) -> bool:
    try:
        GenerationConfig.from_pretrained(str(source))
    except OSError:
        return False
    return True
