import functools
import json

import pytest

from ssp.rewards import REWARDS
from ssp.rewards.code import (
    LEETCODE_PRELUDE,
    CodeResult,
    check_program,
    check_programs,
    code_tests,
    json_values_match,
    livecodebench_tests,
    parse_tests,
    stdout_matches,
)

ADD = "def add(a, b):\n    return a + b\n"
SUM_STDIN = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"
SUM_CASES = [{"input": "1 2 3\n", "output": "6\n"}, {"input": "10 -4", "output": "6"}, {"input": "5", "output": "5"}]
FUNCTIONAL = {
    "fn_name": "pairSum",
    "cases": [{"input": "[1, 2]\n3", "output": "[4, 5]"}, {"input": "[]\n0", "output": "[]"}],
}


def test_assert_tests_pass_and_count_each_assert():
    assert check_program(ADD, "assert add(1, 2) == 3\nassert add(-1, 1) == 0") == CodeResult(
        True, 1.0, "ok", ("ok", "ok")
    )
    result = check_program(ADD, "assert add(1, 2) == 3\nassert add(2, 2) == 5\nassert add(0, 0) == 0")
    assert (result.passed, result.fraction, result.status, result.tests) == (
        False,
        2 / 3,
        "wrong",
        ("ok", "wrong", "ok"),
    )


def test_humaneval_style_check_function():
    tests = (
        "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert abs(candidate(0.1, 0.2) - 0.3) < 1e-9\n"
    )
    assert check_program(ADD, tests + "\ncheck(add)").passed
    assert check_program("def add(a, b):\n    return a - b\n", tests + "\ncheck(add)").status == "wrong"


def test_test_code_without_a_test_is_an_error():
    with pytest.raises(ValueError, match="no top-level assert or call"):
        check_program(ADD, "def check(candidate):\n    assert candidate(1, 2) == 3\n")
    with pytest.raises(ValueError, match="does not parse"):
        check_program(ADD, "assert add(1, 2) ==")


def test_stdin_stdout_cases():
    assert check_program(SUM_STDIN, SUM_CASES).passed
    result = check_program("print(6)", SUM_CASES)
    assert (result.passed, result.tests) == (False, ("ok", "ok", "wrong"))


def test_stdin_program_may_exit_zero_but_not_nonzero():
    assert check_program("print(input())\nimport sys\nsys.exit(0)", [{"input": "a", "output": "a"}]).passed
    result = check_program("print(input())\nraise SystemExit(3)", [{"input": "a", "output": "a"}])
    assert (result.status, result.message) == ("error", "exited with 3")


def test_stdin_program_runs_as_main_and_can_use_threads():
    program = (
        "import threading\n"
        "def main():\n    print(int(input()) * 2)\n"
        "if __name__ == '__main__':\n    threading.Thread(target=main).start()\n"
    )
    assert check_program(program, [{"input": "21", "output": "42"}]).passed


def test_functional_spec_calls_solution_method_or_function():
    solution = "class Solution:\n    def pairSum(self, nums, k):\n        return tuple(n + k for n in nums)\n"
    assert check_program(solution, FUNCTIONAL).passed
    function = "def pairSum(nums, k):\n    return [n + k for n in nums]\n"
    assert check_program(function, FUNCTIONAL).passed
    result = check_program("def other(nums, k):\n    return []\n", FUNCTIONAL)
    assert result.status == "error" and "no function 'pairSum'" in result.message


def test_rllm_leetcode_dict_is_assert_code():
    spec = parse_tests({"functional": "def check(candidate):\n    assert candidate(1, 2) == 3\n\ncheck(add)"})
    assert (spec.kind, spec.units) == ("asserts", 1)
    assert check_program(ADD, json.dumps({"functional": "assert add(1, 2) == 3"})).passed


def test_json_encoded_test_forms_are_accepted():
    assert check_program(SUM_STDIN, json.dumps(SUM_CASES)).passed
    assert check_program("def pairSum(nums, k):\n    return [n + k for n in nums]", json.dumps(FUNCTIONAL)).passed


@pytest.mark.parametrize(
    ("tests", "message"),
    [
        ([], "non-empty list"),
        ([{"input": "1"}], "each stdin/stdout case"),
        ([{"input": "1", "output": "1", "testtype": "functional"}], "livecodebench_tests"),
        ({"fn_name": "f"}, "functional test spec"),
        ({"fn_name": "f", "cases": [{"input": 1, "output": "1"}]}, "each functional case"),
        ({"fn_name": "f", "cases": [{"input": "[1,", "output": "1"}]}, "not JSON"),
        (42, "tests must be"),
    ],
)
def test_malformed_tests_are_rejected_with_a_reason(tests, message):
    with pytest.raises(ValueError, match=message):
        parse_tests(tests)


def test_livecodebench_rows_convert():
    starter = "class Solution:\n    def maxSum(self, nums: List[int]) -> int:\n        "
    functional = [{"input": "[1, 2]", "output": "3", "testtype": "functional"}]
    assert livecodebench_tests(starter, json.dumps(functional)) == {
        "fn_name": "maxSum",
        "cases": [{"input": "[1, 2]", "output": "3"}],
    }
    stdin = [{"input": "1\n", "output": "1\n", "testtype": "stdin"}]
    assert livecodebench_tests("", stdin) == [{"input": "1\n", "output": "1\n"}]
    program = "from typing import List\nclass Solution:\n    def maxSum(self, nums: List[int]) -> int:\n"
    program += "        return sum(nums)\n"
    assert check_program(program, livecodebench_tests(starter, functional)).passed


@pytest.mark.parametrize(
    ("actual", "expected", "match"),
    [
        ("1 2\n3\n", "1 2 3", True),
        ("1 2 3   \n\n", "1 2 3\n", True),
        ("0.3333333", "0.333333333", True),
        ("0.3334", "0.333333333", False),
        ("1000000001", "1000000000", False),  # integers compare exactly
        ("YES", "yes", False),
        ("1 2", "1 2 3", False),
        ("nan", "0.5", False),
    ],
)
def test_stdout_comparison(actual, expected, match):
    assert stdout_matches(actual, expected) is match


@pytest.mark.parametrize(
    ("got", "want", "match"),
    [
        ([1, 2], [1, 2], True),
        (1.0000000001, 1, True),
        (True, 1, False),
        ({"a": [1]}, {"a": [1]}, True),
        ([1, 2], [2, 1], False),
        ("1", 1, False),
    ],
)
def test_json_value_comparison(got, want, match):
    assert json_values_match(got, want) is match


def test_syntax_error_and_missing_code():
    result = check_program("def add(a, b) return a", "assert add(1, 2) == 3")
    assert (result.passed, result.status) == (False, "syntax_error")
    assert check_programs([None], ["assert True"])[0].status == "no_code"


def test_runtime_error_message_is_kept():
    result = check_program("def add(a, b):\n    return a / 0\n", "assert add(1, 2) == 3")
    assert (result.status, result.message) == ("error", "test 1: ZeroDivisionError: division by zero")


def test_leetcode_prelude_provides_imports_and_list_helpers():
    program = (
        "class Solution:\n"
        "    def reverseList(self, head: Optional[ListNode]) -> Optional[ListNode]:\n"
        "        prev = None\n"
        "        while head:\n"
        "            head.next, prev, head = prev, head, head.next\n"
        "        return prev\n"
    )
    tests = "assert is_same_list(Solution().reverseList(list_node([1, 2, 3])), list_node([3, 2, 1]))\n"
    assert check_program(program, tests, prelude=LEETCODE_PRELUDE).passed
    assert check_program("print(pow(2, 10, 1000))", [{"input": "", "output": "24"}], prelude=LEETCODE_PRELUDE).passed


def test_code_reward_extracts_the_last_python_block():
    good = "Here:\n```python\ndef add(a, b):\n    return a + b\n```"
    wrong_last = good + "\nOr:\n```python\ndef add(a, b):\n    return a * b\n```"
    truncated = good + "\n```python\ndef add(a, b):\n"
    completions = [good, wrong_last, truncated, "no code", [{"role": "assistant", "content": good}], good]
    tests = ["assert add(2, 3) == 5"] * 5 + [None]
    metrics = {}
    rewards = code_tests(completions, tests, prompts=["p"] * 6, log_metric=metrics.__setitem__)
    assert rewards == [1.0, 0.0, 0.0, 0.0, 1.0, None]
    assert (metrics["rewards/code_tests/ok"], metrics["rewards/code_tests/no_code"]) == (0.4, 0.4)
    assert REWARDS["code_tests"] is code_tests


def test_code_reward_reads_prelude_column_and_timeout_option():
    completion = "```python\nprint(gcd(12, 18))\n```"
    tests = [[{"input": "", "output": "6"}]] * 2
    assert code_tests([completion] * 2, tests, prelude=[LEETCODE_PRELUDE, None]) == [1.0, 0.0]
    slow = "```python\nimport time\ntime.sleep(3)\nprint(1)\n```"
    quick = functools.partial(code_tests, timeout=0.5)
    assert quick([slow], [[{"input": "", "output": "1"}]]) == [0.0]


def test_output_far_longer_than_expected_is_cut_off():
    result = check_program("print('x' * 100_000)", [{"input": "", "output": "x"}])
    assert (result.passed, result.status) == (False, "output_limit")
