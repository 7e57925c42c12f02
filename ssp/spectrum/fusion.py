"""Expert model fusion: M_merge = sum_i w_i * M*_i, tensor by tensor from safetensors.

Each output shard is accumulated from one input tensor at a time and written before the next shard starts, so
peak memory stays near one shard of the model (plus one input tensor), whatever the number of experts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ssp.coerce import RecipeError
from ssp.files import staged_dir

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# Architecture keys that must agree for parameters to be averaged; others (e.g. dtype, paths) may differ.
_SHAPE_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "tie_word_embeddings",
)


class MergeError(RecipeError):
    """The models cannot be merged (different architectures, tensors or shapes), or not into that output folder."""


def shard_layout(model_dir: Path) -> dict[str, list[str]]:
    """Shard file -> tensor names, for single-file and sharded (index.json) checkpoints."""
    index = model_dir / INDEX_NAME
    if index.is_file():
        layout: dict[str, list[str]] = {}
        for name, shard in json.loads(index.read_text())["weight_map"].items():
            layout.setdefault(shard, []).append(name)
        return layout
    single = model_dir / SINGLE_NAME
    if not single.is_file():
        raise MergeError(f"{model_dir}: no {SINGLE_NAME} or {INDEX_NAME}")
    with safe_open(single, framework="pt") as handle:
        return {SINGLE_NAME: list(handle.keys())}


def _check_compatible(model_dirs: list[Path]) -> dict[str, list[str]]:
    reference = json.loads((model_dirs[0] / "config.json").read_text())
    layout = shard_layout(model_dirs[0])
    names = {n for shard in layout.values() for n in shard}
    shapes = _tensor_shapes(model_dirs[0], layout)
    for other in model_dirs[1:]:
        config = json.loads((other / "config.json").read_text())
        for key in _SHAPE_KEYS:
            if config.get(key) != reference.get(key):
                raise MergeError(
                    f"cannot merge {other} into {model_dirs[0]}: config {key} differs "
                    f"({config.get(key)!r} vs {reference.get(key)!r})"
                )
        other_layout = shard_layout(other)
        other_names = {n for shard in other_layout.values() for n in shard}
        if other_names != names:
            missing = sorted(names ^ other_names)[0]
            raise MergeError(f"cannot merge {other} into {model_dirs[0]}: tensor {missing} is not in both")
        for name, shape in _tensor_shapes(other, other_layout).items():
            if shape != shapes[name]:
                raise MergeError(
                    f"cannot merge {other} into {model_dirs[0]}: tensor {name} has shape "
                    f"{list(shape)}, expected {list(shapes[name])}"
                )
    return layout


def _tensor_shapes(model_dir: Path, layout: dict[str, list[str]]) -> dict[str, tuple]:
    shapes = {}
    for shard, names in layout.items():
        with safe_open(model_dir / shard, framework="pt") as handle:
            for name in names:
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def _locate(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> the file that holds it (shard layouts may differ between inputs)."""
    return {name: model_dir / shard for shard, names in shard_layout(model_dir).items() for name in names}


def merge_models(model_dirs: list[str | Path], weights: list[float] | None, out_dir: str | Path) -> Path:
    """Write the weighted parameter average of `model_dirs` to `out_dir` as a loadable HF folder.

    `weights` default to uniform; they must be non-negative and are normalised to sum to 1. A directory listed
    twice counts twice (its weights add up). One distinct input is copied unchanged. Config, generation config
    and tokenizer files come from the first model.
    """
    model_dirs = [Path(d) for d in model_dirs]
    if not model_dirs:
        raise MergeError("merge_models needs at least one model")
    weights = [1.0] * len(model_dirs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(model_dirs):
        raise MergeError(f"{len(weights)} weights for {len(model_dirs)} models")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise MergeError(f"weights must be non-negative with a positive sum, got {weights}")
    combined: dict[Path, float] = {}
    for model_dir, weight in zip(model_dirs, weights, strict=True):
        combined[model_dir.resolve()] = combined.get(model_dir.resolve(), 0.0) + weight
    total = sum(combined.values())
    experts = [(d, w / total) for d, w in combined.items() if w > 0]
    out_dir = Path(out_dir)
    check_merge_paths(model_dirs, out_dir)
    layout = _check_compatible([d for d, _ in experts])
    # Built under a staging name and renamed when complete: a merge cut short never passes for a model.
    with staged_dir(out_dir) as staging:
        _write_merge(experts, layout, staging)
    return out_dir


def check_merge_paths(model_dirs: list[Path], out_dir: Path) -> None:
    """Before anything is written: every input is a model folder, and the output is none of them, lies inside
    none and holds none (it is replaced when the merge completes). An output holding files that are not a model
    is refused rather than replaced."""
    out = out_dir.resolve()
    for model_dir in model_dirs:
        if not model_dir.is_dir():
            raise MergeError(f"{model_dir}: model folder not found")
        if not (model_dir / "config.json").is_file():
            raise MergeError(f"{model_dir}: not a model folder (no config.json)")
        source = model_dir.resolve()
        if out == source or out.is_relative_to(source) or source.is_relative_to(out):
            where = "is" if out == source else "is inside" if out.is_relative_to(source) else "holds"
            raise MergeError(f"output {out_dir} {where} the input model {model_dir}; choose another output folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise MergeError(f"output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "config.json").is_file():
        raise MergeError(f"output {out_dir} holds files that are not a model; choose another output folder")


def _write_merge(experts: list[tuple[Path, float]], layout: dict[str, list[str]], out_dir: Path) -> None:
    _copy_side_files(experts[0][0], out_dir)
    if len(experts) == 1:  # averaging one model with weight 1 would only add rounding error
        for shard in layout:
            shutil.copy2(experts[0][0] / shard, out_dir / shard)
        return
    locations = [_locate(d) for d, _ in experts]
    for shard, names in layout.items():
        merged: dict[str, torch.Tensor] = {}
        for name in names:
            accumulator = first = None
            for (model_dir, weight), location in zip(experts, locations, strict=True):
                with safe_open(location[name], framework="pt") as handle:
                    tensor = handle.get_tensor(name)
                if first is None:
                    first = tensor
                if not tensor.is_floating_point():  # integer buffers cannot be averaged; they must agree
                    if not torch.equal(tensor, first):
                        raise MergeError(f"cannot merge {model_dir}: integer tensor {name} differs")
                    continue
                term = tensor.to(torch.float32) * weight  # accumulate in float32 even for bf16 weights
                accumulator = term if accumulator is None else accumulator.add_(term)
            merged[name] = first if accumulator is None else accumulator.to(first.dtype).contiguous()
        save_file(merged, out_dir / shard, metadata={"format": "pt"})
        del merged


def _copy_side_files(source: Path, out_dir: Path) -> None:
    """Everything but the weights: config, generation config, tokenizer, chat template, shard index."""
    for path in source.iterdir():
        if (
            path.is_file()
            and path.suffix != ".safetensors"
            and path.name not in ("training_args.bin", "trainer_state.json")
        ):
            shutil.copy2(path, out_dir / path.name)
