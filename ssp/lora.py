"""LoRA through peft for both stages (`model.lora`, docs/spectrum.md "LoRA").

TRL's trainers wrap the model with the adapters (`peft_config=`) and save only the adapter in each checkpoint; the
training state that resumes a run holds that adapter. Every model ssp hands on (SFT's `step-N` candidates, an RL
stage's model) is instead the base with the adapter merged in (`merge_adapter`), a plain model folder that probing,
fusion, RL and serving read like any other.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import peft
import torch
from peft import PeftModel, get_peft_model
from peft.utils.error import NoMatchingPeftModuleError
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

from ssp.config import LoraConfig, RecipeError, TinyModelSpec
from ssp.models import load_model, resolve_dtype

KEY = "model.lora.target_modules"
# What peft writes beside the adapter; a merged model folder keeps none of it.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "README.md")


def peft_config(lora: LoraConfig) -> peft.LoraConfig | None:
    """The peft config of the recipe's `model.lora`; None when LoRA is off (full fine-tuning)."""
    if not lora.enabled:
        return None
    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    return peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
    )


@contextmanager
def target_errors():
    """peft's "target modules not found" as a one-line recipe error naming the key."""
    try:
        yield
    except NoMatchingPeftModuleError as error:
        raise RecipeError(f"{KEY}: {str(error).splitlines()[0]}") from None


def _architecture(name_or_path: str, tiny: TinyModelSpec):
    """The model's config, read without its weights; None when it cannot be read yet (a hub id not cached)."""
    if name_or_path == "tiny":  # ssp.tiny_models builds a Llama of these sizes (the vocabulary does not matter)
        return LlamaConfig(hidden_size=tiny.hidden_size, intermediate_size=tiny.intermediate_size,
                           num_hidden_layers=tiny.num_layers, num_attention_heads=tiny.num_heads,
                           vocab_size=tiny.vocab_size)  # fmt: skip
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError):
        return None


def check_target_modules(lora: LoraConfig, name_or_path: str, tiny: TinyModelSpec) -> None:
    """Every name in `model.lora.target_modules` must target a module of the model that peft can adapt (checked on
    an empty, meta-device copy: no weights are read); peft itself only refuses a list none of whose names match. A
    model whose config cannot be read yet is checked by peft when training starts (`target_errors`)."""
    if not lora.enabled:
        return
    config = _architecture(name_or_path, tiny)
    if config is None:
        return
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = dict(model.named_modules())
    if not isinstance(lora.target_modules, str):  # a list: each name the end of a module's dotted name (peft's rule)
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if isinstance(m, torch.nn.Linear)})
        for name in lora.target_modules:
            if not any(key == name or key.endswith(f".{name}") for key in modules):
                raise RecipeError(f"{KEY}: {name!r} names no module of {name_or_path} (its linear layers: "
                                  f"{', '.join(linear)}; or all-linear)")  # fmt: skip
    # A regular expression or all-linear, and a module peft cannot adapt: peft's own check, on the empty model.
    # peft asks the model `is_gradient_checkpointing`, which transformers 5.24 answers with a FutureWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            get_peft_model(model, peft_config(lora))
        except ValueError as error:
            raise RecipeError(f"{KEY}: {str(error).splitlines()[0]}") from None


def merge_adapter(adapter_dir: Path, target_dir: Path, base_path: str | Path, dtype: str = "auto") -> None:
    """Write into `target_dir` the model files (weights, config, generation config) of `base_path` with the adapter
    saved in `adapter_dir` merged in, in the dtype training used (`model.dtype`). The merge is done in float32 from
    the base on disk, so it needs no copy of the model being trained (nor its DeepSpeed shards)."""
    # peft initialises the adapter layers before loading the saved ones: that draws from the global RNG, which a
    # merge during training must leave as it was (or dropout after a save would differ from a resumed run's).
    with torch.random.fork_rng():
        base = load_model(base_path, "float32")
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.to(resolve_dtype(dtype)).save_pretrained(str(target_dir))


def merge_adapter_folder(folder: Path, base_path: str | Path, dtype: str = "auto") -> None:
    """Turn a folder that `trainer.save_model` wrote for a peft model into a plain model folder: the adapter merged
    into `base_path`, the adapter files removed (the tokenizer files stay)."""
    folder = Path(folder)
    merge_adapter(folder, folder, base_path, dtype)
    for name in ADAPTER_FILES:
        (folder / name).unlink(missing_ok=True)
