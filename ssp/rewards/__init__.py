"""Reward functions with TRL's signature `f(completions, **columns) -> list[float | None]`.

Probing, evaluation and RL all score with the functions of this one explicit registry; a recipe names them. The
registry names each built-in by the module that defines it and imports that module at the first lookup of the
name: validating a recipe needs only the names, and `code_tests` brings the sandbox with it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping


class RewardRegistry(MutableMapping):
    """name -> reward function. An entry is the function itself or `"module:function"`, imported when the name is
    first looked up; membership and iteration read the names alone."""

    def __init__(self, entries: dict[str, Callable | str]):
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Callable:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, function = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), function)
        return entry

    def __contains__(self, name: object) -> bool:  # Mapping's own would look the function up, importing it
        return name in self._entries

    def __setitem__(self, name: str, function: Callable) -> None:
        self._entries[name] = function

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


REWARDS = RewardRegistry(
    {
        "boxed_match": "ssp.rewards.boxed:boxed_match",
        "math_verify": "ssp.rewards.math_answers:math_verify",
        "code_tests": "ssp.rewards.code:code_tests",
    }
)


def is_code(reward: str) -> bool:
    """Rows scored by `reward` are code problems: checked by their tests, not an answer."""
    return reward == "code_tests"


def get_reward(name: str) -> Callable:
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]
