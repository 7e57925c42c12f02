"""One normaliser per answer kind: math golds by their format (normalize_gold), the embedded task's exact-match key."""

import pytest

from ssp.rewards.boxed import boxed_match, exact_match_key
from ssp.rewards.math_answers import normalize_gold


@pytest.mark.parametrize(
    ("gold", "answer_format", "normalized"),
    [
        ("025", "integer", "25"),
        (" 7 ", "integer", "7"),
        (27.0, "number", "27"),
        ("2.5", "number", "2.5"),
        ("Steps.\n#### 1,000", "gsm8k", "1000"),
        (" $\\frac{1}{2}$ ", "latex", "\\frac{1}{2}"),
        ("1\\,000", "latex", "1\\,000"),  # latex keeps the text; auto drops LaTeX thousands spacing
        ("1\\,000", "auto", "1000"),
        ("", "latex", None),
        (None, "integer", None),
    ],
)
def test_each_answer_format(gold, answer_format, normalized):
    assert normalize_gold(gold, answer_format) == normalized


@pytest.mark.parametrize(
    ("gold", "answer_format", "message"),
    [
        ("x", "integer", "invalid literal for int"),
        ("2.5", "integer", "invalid literal for int"),
        ("seven", "number", "could not convert string to float"),
        ("72", "gsm8k", "no '####' before the final answer"),
        (True, "auto", "a gold answer cannot be a bool"),
        ("1", "roman", "unknown answer_format 'roman'"),
    ],
)
def test_a_gold_not_of_its_format_is_a_value_error(gold, answer_format, message):
    with pytest.raises(ValueError, match=message):
        normalize_gold(gold, answer_format)


def test_the_exact_match_key_of_the_embedded_task():
    assert exact_match_key(" $025$ ") == exact_match_key("25.") == exact_match_key("+25") == "25"
    assert exact_match_key("x = 5") == "x=5"
    assert boxed_match(["so \\boxed{025}", "\\boxed{26}", "no box"], ["25", 25, "25"]) == [1.0, 0.0, 0.0]
    # A row without a gold is not scored: `\\boxed{None}` must not match the text of a missing answer.
    assert boxed_match(["\\boxed{None}", "\\boxed{}"], [None, None]) == [None, None]
