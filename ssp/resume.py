"""Resuming a run: rerunning the same command on the same output folder continues from its last complete state.

The rule (docs/resume.md): a folder that holds an ssp run's `recipe.yaml` is resumed when the recipe is the same
(keys in `MAY_CHANGE` aside) and refused, naming the first changed key, when it is not; `overwrite=true` deletes the
earlier run first. What counts as complete is whatever stands under its final name, because every file and model
folder is written beside its target and renamed into place (`ssp.files`):

- a training state is `checkpoints/state-N/` (transformers' `checkpoint-N` with the optimizer, scheduler, RNG and
  trainer state, renamed by `TrainingCheckpoints` once every process finished writing it); a `checkpoint-N` is a
  save that was cut short and is deleted;
- SFT's candidate models are `checkpoints/step-N/` (model files and the training log `trainer_state.json`, hard
  links into the state's files; with LoRA the state holds the adapter and `step-N/` the base with it merged in);
- probing, evaluation, the merged model and each RL stage's model and metrics are single files or folders.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml
from transformers import TrainerCallback

from ssp.coerce import RecipeError
from ssp.config import dump_recipe
from ssp.files import read_json, replace_dir, staging_path, write_json

# Keys whose change does not change a run's results: logging, and how long a rank may wait at a barrier.
MAY_CHANGE = {"overwrite", "distributed_timeout_minutes", "report_to", "logging_steps"}

STATE_PREFIX = "state-"
# transformers' training state, kept in `state-N/` only; the model files and trainer_state.json (the log) go to
# `step-N/` too.
TRAINING_STATE_FILES = re.compile(
    r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth|training_args\.bin"
    r"|latest|zero_to_fp32\.py|global_step\d+|ssp_state\.json)$"
)
# With LoRA, also what peft saves (the adapter and its model card): `step-N/` holds the merged model instead.
ADAPTER_OR_STATE_FILES = re.compile(
    rf"{TRAINING_STATE_FILES.pattern}|^(adapter_model\.(safetensors|bin)|adapter_config\.json|README\.md)$"
)


def flatten(value, prefix: str = "") -> dict[str, object]:
    """`{"a": {"b": [1, {"c": 2}]}}` -> `{"a.b.0": 1, "a.b.1.c": 2}` (an empty dict or list stays a value)."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = enumerate(value)
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def first_changed_key(stored: dict, current: dict) -> tuple[str, object, object] | None:
    """The first dotted key (in the current recipe's order) whose value differs, with the old and new values."""
    old, new = flatten(stored), flatten(current)
    for key in [*new, *(k for k in old if k not in new)]:
        # `sft.report_to.0` is a list item of a key that may change
        if MAY_CHANGE.intersection(key.split(".")) or old.get(key, "<absent>") == new.get(key, "<absent>"):
            continue
        return key, old.get(key, "<absent>"), new.get(key, "<absent>")
    return None


def recipe_as_stored(recipe) -> dict:
    """The recipe as `recipe.yaml` holds it (YAML types: lists, not tuples)."""
    return yaml.safe_load(dump_recipe(recipe))


def check_same_recipe(recipe, out: Path) -> None:
    """Resuming `out` with a different recipe would mix two runs' results: refuse, naming the first change."""
    stored = yaml.safe_load((out / "recipe.yaml").read_text(encoding="utf-8"))
    change = first_changed_key(stored, recipe_as_stored(recipe))
    if change is not None:
        key, old, new = change
        raise RecipeError(
            f"{key}: the run in {out} was started with {old!r}, now {new!r}; rerun with the same recipe to resume, "
            f"or choose another output_dir, or pass overwrite=true to start over"
        )


def step_of(name: str) -> int:
    """`step-120`, `state-120`, `checkpoint-120` -> 120."""
    return int(name.rsplit("-", 1)[-1])


def discard_partial_saves(checkpoints_dir: Path) -> None:
    """Delete transformers' saves that were cut short (`checkpoint-N`, never renamed to `state-N`). Main process
    only, before training starts."""
    for partial in checkpoints_dir.glob("checkpoint-*"):
        shutil.rmtree(partial)


def drop_training_states(checkpoints_dir: Path) -> None:
    """A finished training needs no state to resume from: free the disk (with optimizer states, ~7x the weights)."""
    for training_state in checkpoints_dir.glob(f"{STATE_PREFIX}*"):
        shutil.rmtree(training_state)


def latest_state(checkpoints_dir: Path) -> Path | None:
    """The newest complete training state (`state-N`), or None to start training from its beginning."""
    states = sorted(checkpoints_dir.glob(f"{STATE_PREFIX}*"), key=lambda p: step_of(p.name))
    return states[-1] if states else None


def result_of(path: Path, work: Callable[[], dict], is_main_process: bool) -> dict:
    """What an earlier attempt wrote to `path`, or else `work()`, written there by the main process. Every process
    of a launch calls it for the same `path` (`work` may be collective), and they agree on whether it is done."""
    if path.is_file():
        return read_json(path)
    result = work()
    if is_main_process:
        write_json(path, result)
    return result


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no second copy of the weights on disk), or a copy where the filesystem has none."""
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_file)
    else:
        _link_file(source, target)


def _link_file(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class TrainingCheckpoints(TrainerCallback):
    """Turns each of transformers' saves into a resumable training state, once every process has written its share.

    `checkpoint-N` becomes `state-N` (the older state is then deleted: one is enough to resume), and with
    `model_folders` the model files also become `step-N` (SFT's candidates for probing). A LoRA run's save holds
    only the adapter: `merge_adapter(saved, folder)` then writes the model files of `step-N` (`ssp.lora`), so it is
    a complete model all the same. The save at the last step keeps no state (nothing is left to train).
    `extra_state()` is written into the state as `ssp_state.json` (counters the trainer does not keep itself), and
    `after_save()` runs last (the cost ledger)."""

    def __init__(
        self,
        distributed,
        model_folders: bool = False,
        extra_state: Callable[[], dict] | None = None,
        after_save: Callable[[], None] | None = None,
        merge_adapter: Callable[[Path, Path], None] | None = None,
    ):
        self.distributed = distributed
        self.model_folders = model_folders
        self.extra_state = extra_state
        self.after_save = after_save
        self.merge_adapter = merge_adapter

    def on_save(self, args, state, control, **kwargs):
        self.distributed.wait_for_everyone()
        if state.is_world_process_zero:
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if self.extra_state is not None:
                write_json(saved / "ssp_state.json", self.extra_state())
            if self.model_folders:
                self._model_folder(saved, saved.with_name(f"step-{state.global_step}"), self.merge_adapter)
            if state.global_step >= state.max_steps:
                # The last step's state is not kept: resuming from it, transformers would train one step past the
                # end. The stage writes its result right after; a kill before that resumes from the previous state.
                shutil.rmtree(saved)
            else:
                older = [p for p in saved.parent.glob(f"{STATE_PREFIX}*") if step_of(p.name) != state.global_step]
                replace_dir(saved, saved.with_name(f"{STATE_PREFIX}{state.global_step}"))
                for path in older:
                    shutil.rmtree(path)
            if self.after_save is not None:
                self.after_save()
        self.distributed.wait_for_everyone()

    @staticmethod
    def _model_folder(saved: Path, target: Path, merge_adapter: Callable[[Path, Path], None] | None) -> None:
        staging = staging_path(target)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        skip = TRAINING_STATE_FILES if merge_adapter is None else ADAPTER_OR_STATE_FILES
        for path in saved.iterdir():
            if not skip.match(path.name):
                link_or_copy(path, staging / path.name)
        if merge_adapter is not None:
            merge_adapter(saved, staging)
        replace_dir(staging, target)


def read_extra_state(state_dir: Path | None) -> dict:
    """What `TrainingCheckpoints` stored with the state (empty when training starts fresh)."""
    if state_dir is None or not (state_dir / "ssp_state.json").is_file():
        return {}
    return read_json(state_dir / "ssp_state.json")
