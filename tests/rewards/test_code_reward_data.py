"""The sandbox on real benchmarks from ../shared/data: reference solutions pass, mutated ones fail."""

import ast
import importlib.util

import pytest
from reward_cases import humaneval_cases, leetcode_cases, mbpp_cases, mutate, read_json

from ssp.rewards.code import LEETCODE_PRELUDE, check_programs, livecodebench_tests, parse_tests

# MBPP task 123 is a slow brute-force reference (about 2 s alone, more on a busy machine).
SUITES = {
    "humaneval": (humaneval_cases, {}),
    "mbpp": (mbpp_cases, {"timeout": 20.0}),
    "leetcode": (leetcode_cases, {"preludes": LEETCODE_PRELUDE}),
}


def _missing_modules(program: str) -> list[str]:
    """Third-party modules a reference solution imports that this environment lacks (sortedcontainers, say)."""
    names = set()
    for node in ast.walk(ast.parse(program)):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.partition(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_reference_solutions_pass(suite):
    load, options = SUITES[suite]
    cases = load()
    results = check_programs([program for _, program, _ in cases], [tests for *_, tests in cases], **options)
    failures = {task: r for (task, program, _), r in zip(cases, results, strict=True) if not r.passed}
    explained = {task for task, program, _ in cases if _missing_modules(program)}
    assert set(failures) == explained, {task: failures[task] for task in set(failures) - explained}
    assert all("ModuleNotFoundError" in failures[task].message for task in explained)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_mutated_solutions_fail(suite):
    load, options = SUITES[suite]
    cases = load()
    results = check_programs([mutate(program) for _, program, _ in cases], [tests for *_, tests in cases], **options)
    passing = [task for (task, _, _), r in zip(cases, results, strict=True) if r.passed]
    assert passing == []
    assert {r.status for r in results} <= {"wrong", "error"}


def test_livecodebench_rows_parse_and_wrong_programs_fail():
    rows = read_json("livecodebench_subset", "test.json")
    tests = [livecodebench_tests(row["starter_code"], row["tests"]) for row in rows]
    kinds = [parse_tests(t).kind for t in tests]
    assert (kinds.count("functional"), kinds.count("stdio")) == (104, 175)
    # No reference solutions ship with this subset: a program that prints nothing (or returns None) fails every case.
    programs = [
        "class Solution:\n    def __getattr__(self, name):\n        return lambda *a: None\n"
        if k == "functional"
        else "pass"
        for k in kinds
    ]
    results = check_programs(programs, tests)
    assert not any(r.passed for r in results)


def test_codeforces_stdin_cases_parse():
    rows = read_json("rllm_code", "codeforces_test.json")
    specs = [parse_tests(row["tests"]) for row in rows]
    assert {spec.kind for spec in specs} == {"stdio"} and sum(len(spec.cases) for spec in specs) == 468


def test_a_batch_of_64_programs_finishes():
    cases = humaneval_cases()[:32]
    programs = [program for _, program, _ in cases] + [mutate(program) for _, program, _ in cases[:24]]
    programs += ["while True:\n    pass\n"] * 4 + ["import os\nwhile True:\n    os.fork()\n"] * 4
    tests = [t for *_, t in cases] + [t for *_, t in cases[:24]] + [t for *_, t in cases[:8]]
    results = check_programs(programs, tests, timeout=2.0)
    assert [r.passed for r in results] == [True] * 32 + [False] * 32
    assert {r.status for r in results[56:60]} == {"timeout"}
