"""YAML values onto typed dataclasses: the strict coercion every ssp schema loads through (`ssp.config`, the data
commands' recipes). An unknown key, a value of the wrong type or out of its field's range is a `RecipeError` naming
the dotted key.

A field's range is its metadata, beside its default: `lr: float = field(default=1e-3, metadata=NON_NEGATIVE)`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

import yaml

# Field metadata: a value is refused unless the check holds; the text completes "must be ...". None always passes
# (an optional field left unset).
NON_NEGATIVE = {"range": (lambda value: value >= 0, ">= 0")}
POSITIVE = {"range": (lambda value: value > 0, "> 0")}
AT_LEAST_1 = {"range": (lambda value: value >= 1, ">= 1")}
FRACTION = {"range": (lambda value: 0 <= value < 1, "in [0, 1)")}
PROBABILITY = {"range": (lambda value: 0 < value <= 1, "in (0, 1]")}


class RecipeError(ValueError):
    """A recipe problem the user must fix; the CLI prints it as one line and exits with status 2."""


def apply_override(raw: dict, override: str) -> None:
    """`a.b.c=value`: the value is parsed as YAML (`50` is an int, `[1, 2]` a list, `null` None)."""
    if "=" not in override:
        raise RecipeError(f"override {override!r} is not of the form key=value")
    key, _, text = override.partition("=")
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        value = text
    node: Any = raw
    parts = key.strip().split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(f"override {key}: no list item {part!r} in {'.'.join(parts[:i])}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise RecipeError(f"override {key}: {'.'.join(parts[: i + 1])} is not a section")


def from_dict(cls: type, raw: Any, prefix: str = ""):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and values of the wrong type."""
    where = prefix.rstrip(".") or "recipe"
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a mapping, got {describe(raw)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise RecipeError(f"unknown key {prefix}{key} (known in {where}: {', '.join(sorted(names))})")
    values = {name: _coerce(raw[name], hints[name], f"{prefix}{name}") for name in names if name in raw}
    result = cls(**values)
    check_ranges(result, prefix.rstrip("."))
    return result


def check_ranges(section, where: str = "") -> None:
    """Every field of dataclass `section` with a range in its metadata holds a value in it; `where` names the
    section in the error (`eval.sampling`; empty at the top level)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if "range" in f.metadata and value is not None:
            check, rule = f.metadata["range"]
            if not check(value):
                key = f"{where}.{f.name}" if where else f.name
                raise RecipeError(f"{key}: must be {rule}, got {value}")


def _coerce(value: Any, hint: Any, key: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, key)
            except RecipeError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{key}: expected a list, got {describe(value)}")
        return [_coerce(item, args[0], f"{key}.{i}") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {describe(value)}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key}: expected true or false, got {describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{key}: expected an integer, got {describe(value)}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads `3e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"{key}: expected a number, got {describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{key}: expected a string, got {describe(value)}")
        return value
    raise TypeError(f"{key}: unsupported type {hint!r} in the recipe schema")


def describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"
