"""Reward functions with TRL's signature `f(completions, **columns) -> list[float | None]`.

Probing, evaluation and RL all score with the functions of this one explicit dict; a recipe names them.
"""

from ssp.rewards.boxed import boxed_match
from ssp.rewards.code import code_tests
from ssp.rewards.math_answers import math_verify

REWARDS = {
    "boxed_match": boxed_match,
    "math_verify": math_verify,
    "code_tests": code_tests,
}


def get_reward(name: str):
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]
