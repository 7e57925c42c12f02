import functools
import os
import signal
import threading

import pytest

from ssp.rewards import REWARDS, get_reward
from ssp.rewards.math_answers import (
    MathResult,
    check_answer,
    check_answers,
    extract_answer,
    is_correct,
    math_pool,
    math_verify,
    normalize_gold,
    verify_in_process,
)

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("0.5", "\\dfrac12"),
    ("\\{1,2,3\\}", "\\{3,2,1\\}"),
    ("1,2,3", "3, 2, 1"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2)"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("50\\%", "0.5"),
    ("50", "50\\%"),
    ("5", "5 \\text{ cm}"),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
    ("18", "\\$18"),
    ("025", "25"),
    ("27.0", "27"),
    ("-1.0", "-1"),
    ("1000", "1,000"),
    ("1000", "1\\,000"),
    ("5", "x = 5"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", "\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}"),
    ("2^{25} \\cdot 26!", "26! \\cdot 2^{25}"),
]
NOT_EQUIVALENT = [
    ("\\frac{1}{3}", "0.333"),  # floats must match to 6 decimals
    ("[1,2)", "[1,2]"),
    ("5", "x = 6"),
    ("2", "1, 2, 3"),  # a list of candidates is not the answer
    ("5", "5 \\text{ or } 6"),
    ("4", "\\infty"),
    ("1", "1.000001"),
]


@pytest.mark.parametrize(("gold", "answer"), EQUIVALENT)
def test_equivalent_answers_are_correct(gold, answer):
    assert is_correct(f"Thus the answer is $\\boxed{{{answer}}}$.", gold)


@pytest.mark.parametrize(("gold", "answer"), NOT_EQUIVALENT)
def test_different_answers_are_wrong(gold, answer):
    result = check_answer(f"\\boxed{{{answer}}}", gold)
    assert (result.correct, result.status) == (False, "wrong")


@pytest.mark.parametrize(
    ("gold", "normalized"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1,000", "1,000"),
        (27.0, "27.0"),
        (25, "25"),
        (" $\\frac{1}{2}$ ", "\\frac{1}{2}"),
        ("so the answer is \\boxed{7}.", "7"),
        ("1\\,024", "1024"),
        (None, None),
        ("", None),
    ],
)
def test_normalize_gold(gold, normalized):
    assert normalize_gold(gold) == normalized


def test_gsm8k_and_numeric_golds_verify():
    assert is_correct("\\boxed{1000}", "Some steps.\n#### 1,000")
    assert is_correct("\\boxed{27}", 27.0)
    assert not is_correct("\\boxed{28}", 27.0)


def test_answer_forms():
    assert extract_answer("\\boxed 5") == "5"
    assert is_correct("\\fbox{\\frac{3}{4}}", "0.75")
    assert is_correct("the answer is \\boxed 5", "5")
    assert extract_answer("\\boxed{ }") is None


def test_no_boxed_answer_scores_zero():
    result = check_answer("The answer is 42.", "42")
    assert result == MathResult(False, "no_answer", None)
    assert check_answer("\\boxed{}", "42").status == "no_answer"


def test_only_the_last_boxed_answer_counts():
    assert not is_correct("\\boxed{42} or maybe \\boxed{41}", "42")
    assert is_correct("\\boxed{41} or maybe \\boxed{42}", "42")


def test_overlong_response_and_answer_score_zero():
    response = "x" * 100 + "\\boxed{42}"
    assert check_answer(response, "42", max_response_chars=50) == MathResult(False, "too_long", None)
    assert check_answer(response, "42", max_response_chars=200).correct
    long_answer = "+".join(["1"] * 600) + "-558"
    assert check_answer(f"\\boxed{{{long_answer}}}", "42").status == "too_long"


def test_pathological_expression_times_out_as_wrong():
    result = check_answer("\\boxed{9^{9^{9^{9}}}}", "5", timeout=1)
    assert (result.correct, result.status) == (False, "timeout")


def test_pool_lives_across_calls():
    check_answers(["\\boxed{1}"], ["1"])
    pool = math_pool()
    pids = sorted(w.process.pid for w in pool._workers)
    check_answers(["\\boxed{2}"] * 8, ["2"] * 8)
    assert math_pool() is pool
    assert sorted(w.process.pid for w in pool._workers) == pids


def test_scoring_from_a_thread_uses_the_pool():
    results = []
    thread = threading.Thread(target=lambda: results.append(is_correct("\\boxed{\\frac{2}{4}}", "0.5")))
    thread.start()
    thread.join()
    assert results == [True]


def test_in_process_verification_refuses_to_run_in_a_thread():
    errors = []

    def verify():
        try:
            verify_in_process("1", "1")
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=verify)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "only works in the main thread" in errors[0]


def test_in_process_verification_in_the_main_thread():
    assert verify_in_process("\\frac{1}{2}", "0.5") == "correct"
    assert verify_in_process("3", "0.5") == "wrong"


def test_trl_reward_signature():
    completions = [
        [{"role": "assistant", "content": "so \\boxed{4}"}],
        [{"role": "assistant", "content": "so \\boxed{5}"}],
        [{"role": "assistant", "content": "no idea"}],
        [{"role": "assistant", "content": "\\boxed{4}"}],
    ]
    rewards = math_verify(completions, answer=["4", "4", "4", None], prompts=["p"] * 4, trainer_state=None)
    assert rewards == [1.0, 0.0, 0.0, None]
    metrics = {}
    math_verify(["\\boxed{4}", "none", "\\boxed{5}", "\\boxed{4}"], ["4"] * 4, log_metric=metrics.__setitem__)
    assert metrics["rewards/math_verify/correct"] == 0.5 and metrics["rewards/math_verify/no_answer"] == 0.25
    assert metrics["rewards/math_verify/timeout"] == 0.0
    short = functools.partial(math_verify, max_response_chars=5)
    assert short(["\\boxed{4}"], answer=["4"]) == [0.0]
    assert REWARDS["math_verify"] is math_verify and get_reward("math_verify") is math_verify


def test_a_batch_of_256_with_pathological_answers_finishes():
    responses, golds, expected = [], [], []
    for i in range(256):
        if i % 64 == 0:
            responses.append("\\boxed{10^{10^{10^{10}}}}")
            expected.append(False)
        elif i % 3 == 0:
            responses.append(f"\\boxed{{{i + 1}}}")
            expected.append(False)
        else:
            responses.append(f"so $\\boxed{{\\frac{{{2 * i}}}{{2}}}}$")
            expected.append(True)
        golds.append(str(i))
    results = check_answers(responses, golds, timeout=1)
    assert [r.correct for r in results] == expected
    assert {r.status for i, r in enumerate(results) if i % 64 == 0} == {"timeout"}


@pytest.mark.slow
def test_a_hung_worker_is_killed_and_replaced():
    check_answers(["\\boxed{1}"], ["1"])
    pool = math_pool()
    for worker in pool._workers:
        os.kill(worker.process.pid, signal.SIGSTOP)  # a worker stuck where its own alarm cannot reach it
    results = check_answers(["\\boxed{3}", "\\boxed{4}"], ["3", "4"], timeout=1)
    assert [(r.correct, r.status) for r in results] == [(False, "timeout"), (False, "timeout")]
    assert is_correct("\\boxed{5}", "5")  # replacements work
