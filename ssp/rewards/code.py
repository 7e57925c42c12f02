"""Code correctness: run a program against its tests in the sandbox (`ssp.sandbox`).

A row's `tests` value takes one of three forms (or a JSON string of the list or dict form):
- a string of assert-style Python test code, run after the program in the same process: HumanEval's
  `test + "\\ncheck(entry_point)"`, MBPP's `test_setup_code` + asserts, LeetCode-style `check(Solution().f)`.
  Each top-level `assert` or call statement is one test; other statements are set-up;
- a list of stdin/stdout cases `[{"input": str, "output": str}, ...]` (Codeforces, LiveCodeBench stdin): the program
  runs once per case with `input` on stdin, `__name__ == "__main__"`, and passes when its stdout matches `output`
  token by token (a number with a decimal point in `output` may differ by 1e-6, relative to its size when above 1);
- a LiveCodeBench functional spec `{"fn_name": str, "cases": [{"input": str, "output": str}, ...]}`: `input` holds
  one JSON value per line, the positional arguments; the program's `Solution().<fn_name>` (if it defines class
  `Solution`) or else its top-level `<fn_name>` is called with them, and the JSON of the return value must equal
  `output` (tuples count as lists; floats within 1e-6). `livecodebench_tests` converts an LCB row.
rLLM's LeetCode form `{"functional": "<assert code>"}` is read as assert-style test code.
A `prelude` (for example `LEETCODE_PRELUDE`) runs before the program in the program's namespace: `check_program`
takes it as an argument, the TRL reward from an optional `prelude` column or a `prelude=` keyword.

Statuses: ok, wrong, timeout, error, memory, output_limit, rejected (the test harness caught a value that fakes its
comparisons), syntax_error, no_code (the response has no closed python block), sandbox_error (the sandbox failed).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ssp.rewards._metrics import log_status_shares
from ssp.rewards.extract import completion_text, last_code_block
from ssp.sandbox import Sandbox, SandboxLimits, get_sandbox, job_limits
from ssp.sandbox.pool import TaskFailure

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 6.0
"""Seconds of wall-clock (and, rounded up, CPU) time per program run: per case for stdin and functional tests."""
STATUSES = (
    "ok",
    "wrong",
    "timeout",
    "error",
    "memory",
    "output_limit",
    "rejected",
    "syntax_error",
    "no_code",
    "sandbox_error",
)
FLOAT_TOLERANCE = 1e-6

LEETCODE_PRELUDE = """\
from typing import *
from collections import *
from itertools import *
from functools import *
from heapq import *
from bisect import *
from math import *
from string import *
from builtins import *  # math's and string's names must not shadow builtins such as pow
import bisect, collections, functools, heapq, itertools, math, operator, random, re, string, sys


class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right


def list_node(values):
    head = ListNode()
    node = head
    for value in values:
        node.next = ListNode(value)
        node = node.next
    return head.next


def tree_node(values):
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    queue, index = deque([root]), 1
    while queue and index < len(values):
        node = queue.popleft()
        for side in ("left", "right"):
            if index < len(values) and values[index] is not None:
                child = TreeNode(values[index])
                setattr(node, side, child)
                queue.append(child)
            index += 1
    return root


def is_same_list(a, b):
    while a is not None and b is not None:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None


def is_same_tree(a, b):
    if a is None or b is None:
        return a is b
    return a.val == b.val and is_same_tree(a.left, b.left) and is_same_tree(a.right, b.right)
"""


@dataclass(frozen=True)
class CodeResult:
    passed: bool
    """Every test passed."""
    fraction: float
    """Share of tests passed (cases not run after a timeout count as failed)."""
    status: str
    """`ok` when passed, else the status of the first failing test (one of STATUSES)."""
    tests: tuple[str, ...] = ()
    """Status of each test."""
    message: str = ""


@dataclass(frozen=True)
class _Spec:
    kind: str  # asserts | stdio | functional
    code: str = ""
    cases: tuple[tuple[str, str], ...] = ()
    fn_name: str = ""
    units: int = 0


def parse_tests(tests) -> _Spec:
    """Validate a `tests` value (see the module docstring); ValueError names what is wrong with it."""
    if isinstance(tests, str):
        stripped = tests.strip()
        if stripped[:1] in "[{":
            try:
                decoded = json.loads(stripped)
            except ValueError:
                decoded = None
            if isinstance(decoded, (list, dict)):
                return parse_tests(decoded)
        return _assert_spec(tests)
    if isinstance(tests, list):
        return _Spec("stdio", cases=_cases(tests, "stdin/stdout"))
    if isinstance(tests, dict):
        if set(tests) == {"functional"} and isinstance(tests["functional"], str):
            return _assert_spec(tests["functional"])  # rLLM's LeetCode rows: self-invoking assert code
        if set(tests) != {"fn_name", "cases"} or not isinstance(tests["fn_name"], str) or not tests["fn_name"]:
            raise ValueError(f"a functional test spec is {{'fn_name': str, 'cases': [...]}}, got keys {sorted(tests)}")
        return _Spec("functional", cases=_cases(tests["cases"], "functional"), fn_name=tests["fn_name"])
    raise ValueError(
        f"tests must be assert code (str), stdin/stdout cases (list) or a functional spec (dict), got "
        f"{type(tests).__name__}"
    )


def _assert_spec(code: str) -> _Spec:
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise ValueError(f"test code does not parse: {error}") from error
    units = sum(
        isinstance(s, ast.Assert) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)) for s in tree.body
    )
    if units == 0:
        raise ValueError("test code has no top-level assert or call (did you forget `check(entry_point)`?)")
    return _Spec("asserts", code=code, units=units)


def _cases(cases, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(cases, list) or not cases:
        raise ValueError(f"{what} tests need a non-empty list of cases")
    parsed = []
    for case in cases:
        if (
            not isinstance(case, dict)
            or not isinstance(case.get("input"), str)
            or not isinstance(case.get("output"), str)
        ):
            raise ValueError(f"each {what} case is {{'input': str, 'output': str}}, got {str(case)[:200]}")
        if what == "stdin/stdout" and case.get("testtype", "stdin") != "stdin":
            raise ValueError("LiveCodeBench functional cases need the function name: use livecodebench_tests()")
        if what == "functional":
            try:
                for line in case["input"].split("\n"):
                    if line.strip():
                        json.loads(line)
                json.loads(case["output"])
            except ValueError as error:
                raise ValueError(f"functional case is not JSON (one value per input line): {error}") from error
        parsed.append((case["input"], case["output"]))
    return tuple(parsed)


def livecodebench_tests(starter_code: str, tests) -> list | dict:
    """An LCB row's tests (`[{"input", "output", "testtype"}]`, maybe as JSON) in this module's format."""
    if isinstance(tests, str):
        tests = json.loads(tests)
    kinds = {case.get("testtype", "stdin") for case in tests}
    if kinds == {"stdin"}:
        return [{"input": case["input"], "output": case["output"]} for case in tests]
    if kinds != {"functional"}:
        raise ValueError(f"mixed LiveCodeBench test types {sorted(kinds)}")
    match = re.search(r"def\s+(\w+)\s*\(\s*self", starter_code or "")
    if match is None:
        raise ValueError("functional LiveCodeBench tests need starter code with a `def name(self, ...)` method")
    return {"fn_name": match.group(1), "cases": [{"input": c["input"], "output": c["output"]} for c in tests]}


# -- comparing outputs on the host (expected outputs never enter the sandbox) ----------------------------------------


def stdout_matches(actual: str, expected: str) -> bool:
    """Token-by-token equality; a token of `expected` with a decimal point or exponent may be off by 1e-6."""
    actual_tokens, expected_tokens = actual.split(), expected.split()
    if len(actual_tokens) != len(expected_tokens):
        return False
    for got, want in zip(actual_tokens, expected_tokens, strict=True):
        if got == want:
            continue
        if not any(c in want for c in ".eE"):
            return False
        try:
            if not _close(float(got), float(want)):
                return False
        except ValueError:
            return False
    return True


def _close(got: float, want: float) -> bool:
    return math.isfinite(got) and abs(got - want) <= FLOAT_TOLERANCE * max(1.0, abs(want))


def json_values_match(got, want) -> bool:
    """Equality of decoded JSON values; a bool only equals a bool, floats within 1e-6."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return got == want or ((isinstance(want, float) or isinstance(got, float)) and _close(got, want))
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(json_values_match(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(json_values_match(got[k], want[k]) for k in want)
    return type(got) is type(want) and got == want


# -- running ----------------------------------------------------------------------------------------------------------


def _job(program: str, spec: _Spec, prelude: str, timeout: float, limits: SandboxLimits) -> dict:
    job = {"kind": spec.kind, "program": program, "prelude": prelude or "", "limits": job_limits(limits, timeout)}
    if spec.kind == "asserts":
        job["tests"] = spec.code
        job["runs"] = [{}]
    elif spec.kind == "stdio":
        # The cap leaks only the expected output's length; output far beyond it cannot match anyway.
        job["runs"] = [{"stdin": stdin, "output_limit": 2 * len(out.encode()) + 4096} for stdin, out in spec.cases]
    else:
        job["fn_name"] = spec.fn_name
        job["runs"] = [{"input": case_input} for case_input, _ in spec.cases]
    return job


def _deadline(spec: _Spec, timeout: float) -> float:
    runs = 1 if spec.kind == "asserts" else len(spec.cases)
    return runs * (timeout + 1.0) + 10.0  # the zygote enforces each run's limit; this only catches a stuck zygote


def _result(spec: _Spec, reply: dict | TaskFailure) -> CodeResult:
    count = spec.units if spec.kind == "asserts" else len(spec.cases)
    if isinstance(reply, TaskFailure):
        status = "timeout" if reply.reason == "timeout" else "sandbox_error"
        logger.warning("code sandbox %s: %s", reply.reason, reply.detail)
        return CodeResult(False, 0.0, status, (status,) * count, reply.detail)
    if "error" in reply:
        if reply["error"].startswith(("tests do not compile", "prelude does not compile")):
            raise ValueError(reply["error"])
        logger.error("code sandbox: %s", reply["error"])
        return CodeResult(False, 0.0, "sandbox_error", ("sandbox_error",) * count, reply["error"])
    if reply.get("status") == "syntax_error":
        return CodeResult(False, 0.0, "syntax_error", ("syntax_error",) * count, reply.get("message", ""))
    runs = reply["runs"]
    message = next((run.get("message", "") for run in runs if run.get("message")), "")
    if spec.kind == "asserts":
        run = runs[0]
        statuses = list(run.get("units") or [])
        fill = run["status"] if run["status"] != "ok" else "error"
        statuses += [fill] * (count - len(statuses))
    else:
        statuses = [_case_status(spec, run, expected) for run, (_, expected) in zip(runs, spec.cases, strict=False)]
        statuses += ["timeout"] * (count - len(statuses))  # not run after a timeout
    passed = sum(status == "ok" for status in statuses)
    first_failure = next((status for status in statuses if status != "ok"), "ok")
    return CodeResult(passed == count, passed / count, first_failure, tuple(statuses), message)


def _case_status(spec: _Spec, run: dict, expected: str) -> str:
    if run["status"] != "ok":
        return run["status"]
    if spec.kind == "stdio":
        return "ok" if stdout_matches(run.get("stdout", ""), expected) else "wrong"
    try:
        got, want = json.loads(run["value"]), json.loads(expected)
    except (ValueError, KeyError):
        return "wrong"
    return "ok" if json_values_match(got, want) else "wrong"


def check_programs(
    programs: Sequence[str | None],
    tests: Sequence,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    preludes: Sequence[str | None] | str | None = None,
    sandbox: Sandbox | None = None,
) -> list[CodeResult]:
    """Run each program against its tests, spread over the sandbox's zygotes. A None program scores `no_code`.

    `sandbox` defaults to the process-wide one (`get_sandbox()`); its limits apply.
    """
    programs, tests = list(programs), list(tests)
    if len(programs) != len(tests):
        raise ValueError(f"{len(programs)} programs but {len(tests)} test sets")
    if preludes is None or isinstance(preludes, str):
        preludes = [preludes or ""] * len(programs)
    elif len(preludes) != len(programs):
        raise ValueError(f"{len(programs)} programs but {len(preludes)} preludes")
    sandbox = sandbox or get_sandbox()
    specs = [parse_tests(t) for t in tests]
    results: list[CodeResult | None] = [None] * len(programs)
    jobs, deadlines, indices = [], [], []
    for i, (program, spec) in enumerate(zip(programs, specs, strict=True)):
        if program is None or not program.strip():
            count = spec.units if spec.kind == "asserts" else len(spec.cases)
            results[i] = CodeResult(False, 0.0, "no_code", ("no_code",) * count)
            continue
        jobs.append(_job(program, spec, preludes[i] or "", timeout, sandbox.limits))
        deadlines.append(_deadline(spec, timeout))
        indices.append(i)
    if jobs:
        replies = sandbox.run(jobs, deadlines)
        for i, reply in zip(indices, replies, strict=True):
            results[i] = _result(specs[i], reply)
    return results  # type: ignore[return-value]


def check_program(program: str, tests, timeout: float = DEFAULT_TIMEOUT, *, prelude: str = "") -> CodeResult:
    """Run one program against `tests` (assert code, stdin/stdout cases or a functional spec) in the sandbox."""
    return check_programs([program], [tests], timeout, preludes=[prelude])[0]


def check_responses(responses, tests, preludes=None, timeout: float = DEFAULT_TIMEOUT) -> list[CodeResult | None]:
    """Run the last python block of each response (`last_code_block`) against its tests; None where the tests are
    None (the row has no code to check). `preludes` is one per response or one string (or None) for all."""
    responses, tests = list(responses), list(tests)
    preludes = list(preludes) if isinstance(preludes, (list, tuple)) else [preludes] * len(responses)
    rows = [i for i, t in enumerate(tests) if t is not None]
    programs = [last_code_block(completion_text(responses[i])) for i in rows]
    found = check_programs(programs, [tests[i] for i in rows], timeout, preludes=[preludes[i] for i in rows])
    results: list[CodeResult | None] = [None] * len(responses)
    for i, result in zip(rows, found, strict=True):
        results[i] = result
    return results


def code_tests(completions, tests, **kwargs) -> list[float | None]:
    """TRL reward: 1.0 when the last python block of the completion passes all its tests, else 0.0.

    None for rows whose `tests` is None. Reads an optional `prelude` column (or `prelude=` keyword, a string for
    every row) and takes `timeout=` via functools.partial. With TRL's `log_metric` it logs the share of each status
    (`rewards/code_tests/timeout`, ...). Other keyword arguments are ignored.
    """
    results = check_responses(completions, tests, kwargs.get("prelude"), kwargs.get("timeout", DEFAULT_TIMEOUT))
    statuses = [result.status for result in results if result is not None]
    log_status_shares(kwargs.get("log_metric"), "code_tests", statuses, STATUSES)
    return [None if result is None else float(result.passed) for result in results]
