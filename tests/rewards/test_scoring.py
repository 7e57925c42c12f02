"""The one scorer from rows to rewards: statuses per reward, one batched call per reward, the sandbox failure."""

import pytest

from ssp.rewards import REWARDS, scoring
from ssp.rewards.code import CodeResult
from ssp.rewards.scoring import SandboxFailure, Score, score, start_code_sandbox
from ssp.sandbox.pool import WorkerStartError

ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0"


def block(code: str) -> str:
    return f"```python\n{code}\n```"


def test_boxed_match_statuses():
    rows = [{"reward": "boxed_match", "answer": "025"}]
    found = score(rows, [["so \\boxed{25}", "\\boxed{24}", "no box"]])
    assert found == [[Score(True, "correct"), Score(False, "wrong"), Score(False, "no_answer")]]
    assert score([{"reward": "boxed_match", "answer": None}], [["\\boxed{None}"]]) == [[Score(False, None)]]


def test_math_verify_statuses():
    rows = [{"reward": "math_verify", "answer": "\\frac{1}{2}"}, {"reward": "math_verify", "answer": None}]
    completions = [["\\boxed{0.5}", "\\boxed{3}", "none", "\\boxed{" + "1" * 2000 + "}"], ["\\boxed{1}"]]
    assert [[s.status for s in row] for row in score(rows, completions)] == [
        ["correct", "wrong", "no_answer", "too_long"],
        [None],  # no gold answer: math_verify does not apply to the row
    ]
    assert [[s.correct for s in row] for row in score(rows, completions)] == [[True, False, False, False], [False]]


def test_code_tests_statuses_with_preludes():
    rows = [
        {"reward": "code_tests", "tests": ADD_TESTS, "prelude": ""},
        {"reward": "code_tests", "tests": "assert double(2) == 4", "prelude": "def double(x):\n    return 2 * x"},
    ]
    completions = [
        [block("def add(a, b):\n    return a + b"), block("def add(a, b):\n    return a - b"), "no code"],
        [block("pass")],
    ]
    found = score(rows, completions)
    assert [[s.status for s in row] for row in found] == [["ok", "wrong", "no_code"], ["ok"]]
    assert [[s.correct for s in row] for row in found] == [[True, False, False], [True]]


def test_one_batched_call_per_reward_with_the_columns_its_rows_have(monkeypatch):
    calls = []

    def recording(completions, **columns):
        calls.append((list(completions), columns))
        return [1.0 if c == "good" else 0.0 if c == "bad" else None for c in completions]

    monkeypatch.setitem(REWARDS, "recording", recording)
    rows = [
        {"reward": "recording", "answer": "1"},
        {"reward": "boxed_match", "answer": "2"},
        {"reward": "recording", "domain": "d"},
    ]
    found = score(rows, [["good", "bad"], ["\\boxed{2}"], ["other"]])
    assert calls == [(["good", "bad", "other"], {"answer": ["1", "1", None], "domain": [None, None, "d"]})]
    assert found == [[Score(True, "correct"), Score(False, "wrong")], [Score(True, "correct")], [Score(False, None)]]


def failing(programs, tests, timeout=10, *, preludes=None):
    return [CodeResult(False, 0.0, "sandbox_error", ("sandbox_error",), "zygote 3 died\nmore") for _ in programs]


def test_a_sandbox_failure_raises_one_error_naming_the_first_row(monkeypatch):
    monkeypatch.setattr("ssp.rewards.code.check_programs", failing)
    rows = [
        {"id": "a", "reward": "code_tests", "tests": ADD_TESTS},
        {"id": "b", "reward": "code_tests", "tests": None},
    ]
    with pytest.raises(SandboxFailure) as error:
        score(rows, [[block("x = 1"), block("x = 2")], [block("x = 3")]])
    failure = error.value
    assert str(failure) == (
        "the code sandbox failed on 2 of 2 completions (zygote 3 died); see docs/sandbox.md for what it needs"
    )
    assert (failure.reason, failure.row["id"], failure.failed, failure.scored) == ("zygote 3 died", "a", 2, 2)
    reworded = failure.reworded(f"while scoring {failure.row['id']}: {failure.reason}")
    assert isinstance(reworded, SandboxFailure) and str(reworded) == "while scoring a: zygote 3 died"
    # probing and the stages' evaluations score a failure as wrong instead
    assert score(rows[:1], [[block("x = 1")]], raise_on_sandbox_error=False) == [[Score(False, "sandbox_error")]]


def test_a_sandbox_that_does_not_start_is_one_line(monkeypatch):
    def unavailable():
        raise WorkerStartError("probe program failed: no user namespaces\nmore")

    monkeypatch.setattr(scoring, "get_sandbox", unavailable)
    with pytest.raises(SandboxFailure) as error:
        start_code_sandbox()
    assert str(error.value) == (
        "the code sandbox cannot start (probe program failed: no user namespaces); see docs/sandbox.md for what it "
        "needs"
    )
    assert error.value.reason == "probe program failed: no user namespaces"
