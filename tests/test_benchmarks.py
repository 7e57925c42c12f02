import json

import pytest

from ssp.data import benchmarks
from ssp.data.benchmarks import BENCHMARKS, MATH_INSTRUCTION, load_benchmark
from ssp.data.loading import DataError
from ssp.evaluation.evaluate import score_rows
from ssp.rewards.code import LEETCODE_PRELUDE

SHARED_COUNTS = {
    "aime24": 30,
    "aime25": 30,
    "hmmt25": 30,
    "amc23": 40,
    "math500": 500,
    "gsm8k": 1319,
    "humaneval": 164,
    "mbpp": 500,  # the standard test split, task_id 11-510
    "leetcode": 200,
    "lcb": 279,
}


def test_the_table_holds_exactly_the_issue_benchmarks():
    assert list(BENCHMARKS) == list(SHARED_COUNTS)
    assert {name: spec.reward for name, spec in BENCHMARKS.items()} == {
        name: "math_verify" if name in ("aime24", "aime25", "hmmt25", "amc23", "math500", "gsm8k") else "code_tests"
        for name in SHARED_COUNTS
    }


@pytest.mark.parametrize("name", list(SHARED_COUNTS))
def test_every_row_of_every_local_benchmark_loads(shared_data, name):
    rows = load_benchmark(name, shared_data)
    assert len(rows) == SHARED_COUNTS[name]
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        assert row["domain"] == name and row["reward"] == BENCHMARKS[name].reward
        assert row["problem"].strip()
        if name == "leetcode":  # the statement without rLLM's shared instructions, which the prompt keeps
            assert row["prompt"].startswith(benchmarks.RLLM_INSTRUCTIONS[0])
            assert not any(instruction in row["problem"] for instruction in benchmarks.RLLM_INSTRUCTIONS)
        else:
            assert row["problem"] in row["prompt"]
        if BENCHMARKS[name].kind == "math":
            assert row["answer"] and row["prompt"].endswith(MATH_INSTRUCTION)
        else:
            assert row["tests"] and isinstance(row["prelude"], str) and "```python" in row["prompt"]


def test_gold_answers_are_normalised(shared_data):
    assert load_benchmark("aime24", shared_data)[7]["answer"] == "25"  # stored as "025"
    assert load_benchmark("amc23", shared_data, limit=1)[0]["answer"] == "27"  # stored as 27.0
    gsm8k = load_benchmark("gsm8k", shared_data)
    assert gsm8k[0]["answer"] == "18"
    assert all("," not in row["answer"] and "####" not in row["answer"] for row in gsm8k)
    assert load_benchmark("math500", shared_data, limit=1)[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_mbpp_defaults_to_the_test_split_and_limit_keeps_the_first_rows(shared_data):
    rows = load_benchmark("mbpp", shared_data, limit=3)
    assert [row["id"] for row in rows] == ["mbpp-11", "mbpp-12", "mbpp-13"]
    assert len(load_benchmark("mbpp", shared_data, id_range=None)) == 974


def _as_response(program: str) -> str:
    return f"Here is the program.\n```python\n{program}\n```"


@pytest.mark.parametrize("name", ["humaneval", "mbpp", "leetcode"])
def test_reference_solutions_pass_through_the_rows(shared_data, name):
    rows = load_benchmark(name, shared_data, limit=4)
    assert all(len(row["solutions"]) == 1 for row in rows)
    completions = [[_as_response(row["solutions"][0]), _as_response("def unrelated():\n    return 0")] for row in rows]
    assert score_rows(rows, completions) == [[True, False]] * len(rows)


def test_lcb_rows_score_a_correct_stdin_and_a_correct_functional_program(shared_data):
    rows = load_benchmark("lcb", shared_data)
    stdin_row = rows[0]  # the second largest element's index
    assert isinstance(stdin_row["tests"], list) and "Read the inputs from stdin" in stdin_row["prompt"]
    stdin_program = "n = int(input())\na = list(map(int, input().split()))\nprint(a.index(sorted(a)[-2]) + 1)"
    functional = next(row for row in rows if isinstance(row["tests"], dict))
    assert functional["prelude"] == LEETCODE_PRELUDE and "class Solution" in functional["prompt"]
    assert functional["tests"]["fn_name"] == "shortestDistanceAfterQueries"
    bfs = """class Solution:
    def shortestDistanceAfterQueries(self, n: int, queries: List[List[int]]) -> List[int]:
        roads = defaultdict(list, {i: [i + 1] for i in range(n - 1)})
        answer = []
        for u, v in queries:
            roads[u].append(v)
            distance, queue = {0: 0}, deque([0])
            while queue:
                city = queue.popleft()
                for nxt in roads[city]:
                    if nxt not in distance:
                        distance[nxt] = distance[city] + 1
                        queue.append(nxt)
            answer.append(distance[n - 1])
        return answer"""  # List, defaultdict and deque come from the prelude
    scored = score_rows([stdin_row, functional], [[_as_response(stdin_program), "no code"], [_as_response(bfs)]])
    assert scored == [[True, False], [True]]


def _write_lcb(tmp_path, records) -> str:
    (tmp_path / "livecodebench_subset").mkdir()
    (tmp_path / "livecodebench_subset" / "test.json").write_text(json.dumps(records))
    return str(tmp_path)


def _lcb_record(title: str, released: str | None) -> dict:
    record = {"problem": f"Print {title}.", "starter_code": "", "tests": [{"input": "", "output": title}]}
    if released:
        record["contest_date"] = released
    return record


def test_lcb_date_window_filters_dated_data(tmp_path):
    data_dir = _write_lcb(
        tmp_path,
        [_lcb_record("a", "2024-07-31T00:00:00"), _lcb_record("b", "2024-08-01"), _lcb_record("c", "2025-02-01")],
    )
    assert len(load_benchmark("lcb", data_dir)) == 3
    rows = load_benchmark("lcb", data_dir, since="2024-08-01", until="2025-01-31")
    assert [row["problem"] for row in rows] == ["Print b."]
    assert [row["problem"] for row in load_benchmark("lcb", data_dir, since="2024-08-01")] == ["Print b.", "Print c."]


def test_lcb_date_window_on_data_without_dates_is_a_clear_error(shared_data):
    with pytest.raises(DataError, match=r"^lcb: .*test.json row 0 has no release date .*since/until window"):
        load_benchmark("lcb", shared_data, since="2024-08-01")


def test_a_row_without_a_field_names_benchmark_file_row_and_field(tmp_path):
    (tmp_path / "aime25").mkdir()
    lines = [{"id": "a", "problem": "1+1?", "answer": "2"}, {"id": "b", "problem": "2+2?"}]
    (tmp_path / "aime25" / "test.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    path = tmp_path / "aime25" / "test.jsonl"
    with pytest.raises(DataError) as error:
        load_benchmark("aime25", tmp_path)
    assert str(error.value) == f"aime25: {path} row 1 has no field 'answer' (answer)"


def test_missing_file_and_unknown_name_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=rf"^math500: file not found: {tmp_path}/math500/test.jsonl$"):
        load_benchmark("math500", tmp_path)
    with pytest.raises(DataError, match=r"^unknown benchmark 'aime23' \(known: aime24, aime25, .*lcb\)$"):
        load_benchmark("aime23", tmp_path)


def test_hub_loading_failure_is_a_one_line_error(monkeypatch):
    spec = BENCHMARKS["aime24"]
    fake = type(spec)(**{**spec.__dict__, "hub_id": "ssp-tests/no-such-dataset"})
    monkeypatch.setitem(benchmarks.BENCHMARKS, "aime24", fake)
    with pytest.raises(DataError) as error:
        load_benchmark("aime24")
    assert str(error.value).startswith("aime24: could not load hub dataset 'ssp-tests/no-such-dataset': ")
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="^leetcode: has no hub dataset; pass a data dir holding rllm_code/"):
        load_benchmark("leetcode")


def test_duplicate_ids_name_both_rows(tmp_path):
    (tmp_path / "aime25").mkdir()
    lines = [{"id": "1", "problem": "1+1?", "answer": "2"}, {"id": "2", "problem": "2+2?", "answer": "4"}]
    lines.append({"id": "1", "problem": "3+3?", "answer": "6"})
    (tmp_path / "aime25" / "test.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    with pytest.raises(DataError) as error:
        load_benchmark("aime25", tmp_path)
    assert str(error.value) == f"aime25: {tmp_path / 'aime25' / 'test.jsonl'} rows 0 and 2 have the same id '1'"
    assert [row["id"] for row in load_benchmark("aime25", tmp_path, limit=2)] == ["aime25-1", "aime25-2"]


def test_lcb_is_local_only_because_its_hub_copy_is_a_dataset_script(monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(benchmarks.datasets, "load_dataset", no_hub)
    with pytest.raises(DataError) as error:
        load_benchmark("lcb")
    assert str(error.value) == (
        "lcb: has no hub dataset (livecodebench/code_generation_lite is a dataset script, which datasets>=4 refuses "
        "to run); pass a data dir holding livecodebench_subset/test.json"
    )


def test_lcb_reads_records_shaped_like_the_hub_copy(tmp_path):
    """The fields of livecodebench/code_generation_lite's test*.jsonl, gathered into the local file's JSON array."""
    tests = json.dumps([{"input": "3\n", "output": "6\n", "testtype": "stdin"}])
    record = {"question_id": "abc301_a", "question_content": "Print twice N.", "starter_code": ""}
    record.update(public_test_cases=tests, contest_date="2023-07-01T00:00:00", private_test_cases="eJz...")
    (tmp_path / "livecodebench_subset").mkdir()
    (tmp_path / "livecodebench_subset" / "test.json").write_text(json.dumps([record]))
    (row,) = load_benchmark("lcb", tmp_path, since="2023-06-01")
    assert row["id"] == "lcb-abc301_a" and row["tests"] == [{"input": "3\n", "output": "6\n"}]
    program = "```python\nprint(2 * int(input()))\n```"
    assert score_rows([row], [[program, "```python\nprint(1)\n```"]]) == [[True, False]]
