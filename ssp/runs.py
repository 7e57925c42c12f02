"""The run folder: refuse to clobber an earlier run, write the resolved recipe, JSON helpers."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import torch
from accelerate import PartialState

from ssp.config import RecipeError, dump_recipe
from ssp.models import TinyModelSpec, build_tiny_model


def cpu_deepspeed_backend() -> str | None:
    """`gloo` for a DeepSpeed launch on a machine without CUDA, else None (accelerate's default).

    Without an explicit backend, accelerate initialises DeepSpeed's process group but reports one process per rank,
    so DeepSpeed's batch-size check fails and barriers are no-ops. Passing gloo makes every rank see the world.
    """
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return "gloo" if launched and deepspeed and not torch.cuda.is_available() else None


def distributed_state() -> PartialState:
    backend = cpu_deepspeed_backend()
    return PartialState(backend=backend) if backend else PartialState()


def release_distributed() -> None:
    """Tear down this process's process group before it exits. The spectrum stage's other processes finish while
    the main one is still probing; leaving the interpreter with the group alive could abort (SIGABRT in gloo's
    threads), which makes the launcher kill the main process too."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    """An output folder that already holds files is an error unless the recipe says `overwrite: true`."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise RecipeError(f"output_dir: {output_dir} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise RecipeError(f"output_dir: {output_dir} already holds files; choose another or pass overwrite=true")


def prepare_output_dir(recipe, state: PartialState) -> Path:
    """Create the run folder and write `recipe.yaml` once every process has passed the pre-flight checks."""
    check_output_dir(recipe.output_dir, recipe.overwrite)
    state.wait_for_everyone()  # no process may see a folder another one just created as "an earlier run"
    out = Path(recipe.output_dir)
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        dump_recipe(recipe, out / "recipe.yaml")
    state.wait_for_everyone()
    return out


def write_json(path: str | Path, data) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def tiny_model_texts(rows: list[dict], prompt_template: str, system_prompt: str | None) -> list[str]:
    """What the tiny tokenizer is trained on: every problem, solution and the prompt text, plus printable ASCII
    so no character a user types later is silently dropped."""
    texts = [string.printable, prompt_template, system_prompt or ""]
    for row in rows:
        texts.append(row["problem"])
        texts.extend(row["solutions"])
    return texts


def materialize_base_model(recipe, rows: list[dict], out: Path, state: PartialState) -> str:
    """The initial model's path: the recipe's, or for `tiny` a freshly built model saved to OUT/base."""
    if recipe.model.name_or_path != "tiny":
        return recipe.model.name_or_path
    base = out / "base"
    if state.is_main_process:
        spec: TinyModelSpec = recipe.model.tiny
        build_tiny_model(
            base, tiny_model_texts(rows, recipe.data.prompt_template, recipe.data.system_prompt), spec, recipe.seed
        )
    state.wait_for_everyone()
    return str(base)
