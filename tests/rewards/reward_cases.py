"""Shared helpers of the rewards tests: the benchmark data under ../shared/data and program mutation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def data_file(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"benchmark data not available: {path} (the project's data lives in ../shared/data)")
    return path


def read_jsonl(*parts: str) -> list[dict]:
    return [json.loads(line) for line in data_file(*parts).read_text().splitlines() if line.strip()]


def read_json(*parts: str):
    return json.loads(data_file(*parts).read_text())


def humaneval_cases() -> list[tuple[str, str, str]]:
    """(task id, reference program, tests) as HumanEval is scored: prompt + solution, test + check(entry_point)."""
    return [
        (row["task_id"], row["prompt"] + row["canonical_solution"], row["test"] + f"\ncheck({row['entry_point']})")
        for row in read_jsonl("humaneval", "HumanEval.jsonl")
    ]


def mbpp_cases() -> list[tuple[str, str, str]]:
    """(task id, reference code, test_setup_code + test_list asserts) for all 974 MBPP tasks."""
    return [
        (str(row["task_id"]), row["code"], row["test_setup_code"] + "\n" + "\n".join(row["test_list"]))
        for row in read_jsonl("mbpp", "mbpp.jsonl")
    ]


def leetcode_cases() -> list[tuple[str, str, dict]]:
    """(index, reference `class Solution`, tests as stored: `{"functional": check code}`) of rLLM's LeetCode set."""
    rows = read_json("rllm_code", "leetcode_test.json")
    return [(str(i), row["solutions"], row["tests"]) for i, row in enumerate(rows)]


# Appended to a reference program: the outermost call of every function it defines (and of every public method of
# its `Solution` class) returns a wrong value of the same kind, so a test that checks anything must fail.
MUTATION = """

def _ssp_mutated_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "~mutant"
    if isinstance(value, list):
        return value + [object()]
    if isinstance(value, tuple):
        return value + (object(),)
    if isinstance(value, dict):
        return {**value, object(): 1}
    if isinstance(value, (set, frozenset)):
        return type(value)(set(value) | {object()})
    return object()


_ssp_depth = [0]


def _ssp_mutant(function):
    def mutant(*args, **kwargs):
        _ssp_depth[0] += 1
        try:
            value = function(*args, **kwargs)
        finally:
            _ssp_depth[0] -= 1
        return value if _ssp_depth[0] else _ssp_mutated_value(value)

    return mutant


for _ssp_name, _ssp_value in list(globals().items()):
    if type(_ssp_value).__name__ == "function" and _ssp_value.__module__ == __name__:
        if not _ssp_name.startswith("_ssp"):
            globals()[_ssp_name] = _ssp_mutant(_ssp_value)
if isinstance(globals().get("Solution"), type):
    for _ssp_name, _ssp_value in list(vars(Solution).items()):
        if type(_ssp_value).__name__ == "function" and not _ssp_name.startswith("_"):
            setattr(Solution, _ssp_name, _ssp_mutant(_ssp_value))
"""


def mutate(program: str) -> str:
    return program + MUTATION
