import pytest

from ssp.rewards.extract import completion_text, last_boxed, last_code_block


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}} and later \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("nested \\boxed{\\left\\{1, \\{2\\}\\right\\}}", "\\left\\{1, \\{2\\}\\right\\}"),
        ("\\boxed{a^{b^{c}}}", "a^{b^{c}}"),
        ("the answer is \\boxed 5$.", "5"),
        ("\\fbox{7}", "7"),
        ("\\boxed{1} then \\fbox{2}", "2"),
        ("\\boxed {3}", "3"),
        ("no box here", None),
        ("cut off \\boxed{12", None),
        ("\\boxed{5} and a cut-off \\boxed{6", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_completion_text_joins_conversational_messages():
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"
    assert completion_text("plain") == "plain"
    with pytest.raises(TypeError, match="unsupported completion type int"):
        completion_text(3)


def test_last_code_block_takes_the_last_python_block():
    text = "```python\nprint(1)\n```\ntext\n```py\nprint(2)\n```\n```\nuntagged\n```\n```text\nnot code\n```"
    assert last_code_block(text) == "print(2)"


def test_last_code_block_falls_back_to_untagged_blocks():
    assert last_code_block("```\nx = 1\n```") == "x = 1"
    assert last_code_block("```Python3\nx = 2\n```") == "x = 2"


@pytest.mark.parametrize(
    "text",
    ["no code", "```python\nprint(1)\n```\n```python\nprint(2)", "```text\nnot python\n```", "```python"],
)
def test_last_code_block_none_without_a_closed_block(text):
    # An open block at the end means the response was cut off: even an earlier complete block does not count.
    assert last_code_block(text) is None


def test_last_code_block_keeps_indentation_and_inner_backticks():
    text = "```python\ndef f():\n    return '``'\n```"
    assert last_code_block(text) == "def f():\n    return '``'"
