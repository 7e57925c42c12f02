"""math-verify on the real benchmarks in ../shared/data."""

import pytest
from reward_cases import read_jsonl

from ssp.rewards.math_answers import check_answers, normalize_gold

BENCHMARKS = {
    "math500": ("math500", "test.jsonl"),
    "aime24": ("aime24", "test.jsonl"),
    "aime25": ("aime25", "test.jsonl"),
    "hmmt_feb_2025": ("hmmt_feb_2025", "test.jsonl"),
    "amc23": ("amc23", "test.jsonl"),
    "gsm8k": ("gsm8k", "test.jsonl"),
}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_gold_answer_boxed_in_a_response_verifies(name):
    golds = [row["answer"] for row in read_jsonl(*BENCHMARKS[name])]
    # GSM8K's `answer` is a whole solution: the response boxes its text after `####`.
    responses = [f"Let me think.\nSo the final answer is $\\boxed{{{normalize_gold(g)}}}$." for g in golds]
    results = check_answers(responses, golds)
    failures = [(g, r) for g, r in zip(golds, results, strict=True) if not r.correct]
    assert failures == []


@pytest.mark.parametrize("name", ["aime24", "amc23"])
def test_integer_forms_of_padded_and_float_golds_verify(name):
    golds = [row["answer"] for row in read_jsonl(*BENCHMARKS[name])]  # "025" (AIME 2024), 27.0 (AMC 2023)
    results = check_answers([f"\\boxed{{{int(float(g))}}}" for g in golds], golds)
    assert all(r.correct for r in results)


def test_another_problems_answer_is_wrong():
    golds = [row["answer"] for row in read_jsonl("aime25", "test.jsonl")]
    shifted = golds[1:] + golds[:1]
    pairs = [(a, g) for a, g in zip(shifted, golds, strict=True) if int(a) != int(g)]
    results = check_answers([f"\\boxed{{{a}}}" for a, _ in pairs], [g for _, g in pairs])
    assert len(pairs) == 30 and not any(r.correct for r in results)


@pytest.mark.slow
def test_math_train_solutions_verify_against_their_answers():
    rows = read_jsonl("math_train", "train.jsonl")
    results = check_answers([row["solution"] for row in rows], [row["answer"] for row in rows])
    # Two MATH solutions end in an empty `\boxed{}` (the source lost the answer), so their gold is empty: no score.
    unscored = sorted(row["unique_id"] for row, r in zip(rows, results, strict=True) if r is None)
    assert unscored == ["train/number_theory/7115.json", "train/number_theory/7117.json"]
    wrong = [(row["unique_id"], r) for row, r in zip(rows, results, strict=True) if r is not None and not r.correct]
    assert wrong == []
    assert len(rows) - len(unscored) == 7498
