"""The run folder (resume an earlier run of the same recipe, refuse anything else), the launch's process group, and
the initial model on disk."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import string
import sys
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoConfig, TrainingArguments

from ssp.config import RecipeError, dump_recipe
from ssp.files import staged_dir, write_text
from ssp.models import prepare_initial_model
from ssp.pretrain import pretrained_tiny_model
from ssp.resume import check_same_recipe
from ssp.tiny_models import build_tiny_model


def launched_on_cpu() -> bool:
    """A multi-process launch (accelerate launch, torchrun) on a machine without CUDA."""
    return int(os.environ.get("LOCAL_RANK", -1)) != -1 and not torch.cuda.is_available()


def _deepspeed_launch() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def distributed_state(timeout_minutes: float | None = None) -> PartialState:
    """This process's place in the launch. The first call creates the process group, with `timeout_minutes` for
    every collective (a rank waiting at a barrier gives up after that long); later calls return the same state.

    On CPU the group is gloo: accelerate picks no backend there when it is not told to use the CPU, and each rank
    would then run alone, all of them as "the main process". Without DeepSpeed the launch is accelerate's MULTI_CPU
    (DDP over gloo); with DeepSpeed, DeepSpeed's group over gloo. A group someone else created (DeepSpeed's default
    is 10 minutes, which `ddp_timeout` never changes) gets the timeout set on it.
    """
    kwargs = {} if timeout_minutes is None else {"timeout": timedelta(minutes=timeout_minutes)}
    if launched_on_cpu():
        kwargs.update(backend="gloo", cpu=not _deepspeed_launch())
    state = PartialState(**kwargs)
    if timeout_minutes is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.distributed_c10d._set_pg_timeout(timedelta(minutes=timeout_minutes))
    return state


def checkpointing_args(enabled: bool) -> dict:
    """TrainingArguments' activation-checkpointing switch: `activation_checkpointing` in transformers 5.24 (the CPU
    profile), `gradient_checkpointing` in 5.17 (the GPU profile's, which vLLM 0.31 needs), where the new name does
    not exist yet."""
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}


def trainer_distributed_args(timeout_minutes: float) -> dict:
    """The TrainingArguments fields that must agree with `distributed_state`: transformers re-creates the state
    from them (the process group itself is kept)."""
    args = {"ddp_timeout": int(timeout_minutes * 60)}
    if launched_on_cpu():
        args.update(ddp_backend="gloo", use_cpu=not _deepspeed_launch())
    return args


def check_trl_keys(extra: dict, key: str, trl_class: type, section: type, set_by_ssp) -> None:
    """The names under `key` (`sft.trl`, `rl.stages.0.trl`) go to TRL's `trl_class` as they are: each must be one of
    its fields that neither the recipe `section` holding `key` (whose own keys reach TRL themselves) nor ssp
    (`set_by_ssp`) sets. Checked before any work, so a clash is a one-line error and not a TypeError at training."""
    owner = key.rpartition(".")[0]
    own = {f.name for f in dataclasses.fields(section)}
    known = {f.name for f in dataclasses.fields(trl_class)}
    for name in extra:
        if name in own:
            raise RecipeError(f"{key}.{name} duplicates {owner}.{name}: set it once, as {owner}.{name}")
        if name in set_by_ssp:
            raise RecipeError(
                f"{key}.{name}: ssp sets trl.{trl_class.__name__}.{name} itself, from the recipe's own keys"
            )
        if name not in known:
            raise RecipeError(f"unknown key {key}.{name}: not a field of trl.{trl_class.__name__}")


def free_device_memory() -> None:
    """Return the memory of models just deleted, before the next one loads (the CUDA cache too)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def release_distributed() -> None:
    """Tear down this process's process group before it exits. The spectrum stage's other processes finish while
    the main one is still probing; leaving the interpreter with the group alive could abort (SIGABRT in gloo's
    threads), which makes the launcher kill the main process too."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_output_dir(recipe) -> bool:
    """Whether `recipe.output_dir` resumes an earlier run (`ssp.resume`). Refused: a path that is not a folder, a
    folder that cannot be written, a folder holding files that are not an ssp run, and (unless `overwrite: true`)
    an earlier run of a different recipe."""
    path = Path(recipe.output_dir)
    if path.exists() and not path.is_dir():
        raise RecipeError(f"output_dir: {path} exists and is not a folder")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RecipeError(f"output_dir: {path} cannot be written (no write permission on {existing})")
    if not path.is_dir() or not any(path.iterdir()):
        return False
    if not (path / "recipe.yaml").is_file():
        raise RecipeError(f"output_dir: {path} holds files that are not an ssp run; choose another folder")
    if recipe.overwrite:
        return False
    check_same_recipe(recipe, path)
    return True


def prepare_output_dir(recipe, state: PartialState) -> tuple[Path, bool]:
    """The run folder, and whether the run resumes: an earlier run of the same recipe is continued, and
    `overwrite: true` deletes an earlier run first. `recipe.yaml` is written once every process has passed the
    pre-flight checks."""
    resuming = check_output_dir(recipe)
    state.wait_for_everyone()  # no process may see a folder another one just created as "an earlier run"
    out = Path(recipe.output_dir)
    if state.is_main_process:
        if recipe.overwrite and (out / "recipe.yaml").is_file():
            shutil.rmtree(out)  # a result must come only from the run that wrote it
        out.mkdir(parents=True, exist_ok=True)
        if resuming:
            print(f"resuming the run in {out} (same recipe; overwrite=true starts over)", file=sys.stderr)
        else:
            write_text(out / "recipe.yaml", dump_recipe(recipe))
    state.wait_for_everyone()
    return out, resuming


def tiny_model_texts(rows: list[dict], prompt_template: str, system_prompt: str | None) -> list[str]:
    """What the tiny tokenizer is trained on: every problem, solution and the prompt text, plus printable ASCII
    so no character a user types later is silently dropped."""
    texts = [string.printable, prompt_template, system_prompt or ""]
    for row in rows:
        texts.append(row.get("prompt", row["problem"]))
        texts.extend(row["solutions"])
    return texts


def model_context_overrides(recipe) -> dict:
    """The recipe's changes to the model's config (`model.context`, `model.config_overrides`), as
    `ssp.models.with_context` arguments."""
    context = recipe.model.context
    return {
        "max_position_embeddings": context.max_position_embeddings,
        "rope_theta": context.rope_theta,
        "rope_scaling": context.rope_scaling,
        "overrides": recipe.model.config_overrides,
    }


def planned_positions(recipe, name_or_path: str) -> int | None:
    """The context (positions) the run's models will have, read before anything is written; None when the model's
    config cannot be read yet (a hub id not in the local cache)."""
    if recipe.model.context.max_position_embeddings is not None:
        return recipe.model.context.max_position_embeddings
    if "max_position_embeddings" in recipe.model.config_overrides:
        return recipe.model.config_overrides["max_position_embeddings"]
    if name_or_path == "tiny":
        return recipe.model.tiny.max_position_embeddings
    try:
        return getattr(AutoConfig.from_pretrained(name_or_path), "max_position_embeddings", None)
    except (OSError, ValueError):
        return None


def materialize_base_model(recipe, rows: list[dict], out: Path, state: PartialState, source: str | None = None) -> str:
    """The initial model's path. OUT/base when ssp writes the initial model: the embedded `tiny` model, or a
    model whose files lack the recipe's context, chat template or the end-of-turn stop token
    (`ssp.models.prepare_initial_model`); otherwise `source` itself (by default the recipe's model)."""
    source = source or recipe.model.name_or_path
    base = out / "base"
    if state.is_main_process and not (base / "config.json").is_file():  # complete when present (written staged)
        if source == "tiny":
            with staged_dir(base) as staging:
                if recipe.model.tiny.pretrain.steps:  # one pretrained base per machine, as a hub model would be
                    shutil.copytree(pretrained_tiny_model(recipe.model.tiny), staging, dirs_exist_ok=True)
                else:
                    texts = tiny_model_texts(rows, recipe.data.prompt_template, recipe.data.system_prompt)
                    build_tiny_model(staging, texts, recipe.model.tiny, recipe.seed)
                prepare_initial_model(
                    staging, staging, context=model_context_overrides(recipe), chat_template=recipe.model.chat_template
                )
        else:
            prepare_initial_model(
                source, base, context=model_context_overrides(recipe), chat_template=recipe.model.chat_template
            )
    state.wait_for_everyone()
    return str(base) if (base / "config.json").is_file() else source
