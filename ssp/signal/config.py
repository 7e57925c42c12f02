"""MGPOConfig, TRL's GRPOConfig plus MGPO's fields, and how one curriculum stage's settings become one.

TRL's convention is a config/trainer pair: `MGPOTrainer` (ssp.signal.trainer) reads its settings from an
`MGPOConfig`. A stage's key named like an MGPOConfig field (`learning_rate`, `num_generations`, `mgpo_lambda`, ...)
passes under that name unchanged, so a TRL upgrade touches only the recipe schema; the keys ssp translates, and its
own choices, are written once, in `ssp_settings`. `rl.trl` reaches every other GRPOConfig field; a name there that
the stage's own keys or ssp set is refused before any work (`check_stage_trl`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import GenerationConfig
from trl import GRPOConfig

from ssp.config import RLSection
from ssp.generation.backends import vllm_available
from ssp.models import bf16_supported, load_tokenizer, stop_token_ids
from ssp.runs import check_trl_keys, checkpointing_args, trainer_distributed_args


@dataclass
class MGPOConfig(GRPOConfig):
    """GRPOConfig plus the fields of MGPO's advantage weighting."""

    mgpo_lambda: float = field(
        default=1.0, metadata={"help": "lambda of w_ME(p) = exp(-lambda * D_ME(p)); 0 is plain GRPO."}
    )
    correctness_reward: str | None = field(
        default=None,
        metadata={
            "help": "The reward whose score of 1 means correct (MGPO's p) for rows without a `correctness_reward` "
            "column; None: the only reward, when there is one."
        },
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "DAPO's dynamic sampling: drop the groups whose rewards have zero variance and refill the "
            "generation batch with groups of new prompts (MGPOTrainer)."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=8,
        metadata={
            "help": "Generation rounds per generation batch with dynamic_sampling, the first included; past them "
            "the batch is completed with zero-variance groups."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.dynamic_sampling_max_rounds < 1:
            raise ValueError(f"dynamic_sampling_max_rounds must be >= 1, got {self.dynamic_sampling_max_rounds}")


# RLSection keys that ssp turns into other settings (`ssp_settings`); every other key named like an MGPOConfig field
# passes as it is. `data`, `trl` and `stages` are ssp's own.
TRANSLATED = ("rewards", "warmup_ratio", "use_vllm", "bf16", "gradient_checkpointing", "save_every", "report_to")


def passed_through() -> list[str]:
    """The RLSection keys that reach MGPOConfig under their own name, unchanged."""
    names = {f.name for f in dataclasses.fields(MGPOConfig)}
    return [f.name for f in dataclasses.fields(RLSection) if f.name in names and f.name not in TRANSLATED]


def uses_vllm(rl: RLSection) -> bool:
    return vllm_available() if rl.use_vllm is None else rl.use_vllm


def ssp_settings(rl: RLSection, stage_dir: Path, run_name: str, seed: int, timeout_minutes: float) -> dict:
    """The MGPOConfig fields ssp sets itself: the stage's translated keys, the run's folder, name and seed, and the
    choices every stage makes."""
    return {
        "output_dir": str(stage_dir / "checkpoints"),
        "reward_weights": list(rl.rewards.values()),
        "warmup_steps": rl.warmup_ratio,  # a float < 1 is a fraction of the total steps
        "use_vllm": uses_vllm(rl),
        "bf16": bf16_supported() if rl.bf16 is None else rl.bf16,
        **checkpointing_args(rl.gradient_checkpointing),
        "save_strategy": "steps" if rl.save_every else "no",
        "save_steps": rl.save_every or 500,
        "save_only_model": False,  # the optimizer, scheduler and RNG states too: a killed stage resumes (ssp.resume)
        "report_to": rl.report_to or "none",
        "run_name": run_name,
        "seed": seed,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "log_completions": False,
        **trainer_distributed_args(timeout_minutes),
    }


def check_stage_trl(rl: RLSection, key: str) -> None:
    """Before any work: `<key>.trl` names only GRPOConfig fields that neither the stage's own keys nor ssp set."""
    set_by_ssp = ssp_settings(rl, Path(), "", 0, 1.0)
    check_trl_keys(rl.trl, f"{key}.trl", GRPOConfig, RLSection, set_by_ssp)


def stop_generation_kwargs(model_path: str, use_vllm: bool) -> dict:
    """TRL's rollouts stop at every id in the model's generation config (written there by
    `ssp.models.prepare_initial_model`, the chat template's end of turn among them). TRL's transformers path reads
    that list itself; vLLM gets it as `stop_token_ids` as well, rather than relying on its own reading."""
    if not use_vllm:
        return {}
    tokenizer = load_tokenizer(model_path)
    generation = GenerationConfig.from_pretrained(model_path)
    return {"stop_token_ids": stop_token_ids(tokenizer, generation)}


def build_mgpo_config(
    rl: RLSection,
    stage_dir: Path,
    run_name: str,
    seed: int,
    timeout_minutes: float = 120.0,
    model_path: str | None = None,
) -> MGPOConfig:
    """TRL's config for one stage, built from the stage's settings; `model_path` (the stage's initial model) adds
    its stop tokens to the rollouts."""
    settings = ssp_settings(rl, stage_dir, run_name, seed, timeout_minutes)
    extra = dict(rl.trl)
    if model_path is not None:
        stops = stop_generation_kwargs(model_path, settings["use_vllm"])
        extra["generation_kwargs"] = {**stops, **(extra.get("generation_kwargs") or {})}
    same_name = {name: getattr(rl, name) for name in passed_through()}
    return MGPOConfig(**same_name, **settings, **extra)
