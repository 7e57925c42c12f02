"""The one row reader (ssp.data.rows): the stages' loader and the data commands read records with the same rules;
the benchmarks check their fields with the same functions."""

import json

import pytest

from ssp.config import DataSource, FieldMap, TaskConfig
from ssp.data.benchmarks import load_benchmark
from ssp.data.loading import load_split
from ssp.data.problems import ProblemReader
from ssp.data.records import DataError
from ssp.data.rows import RowReader, keep_rows
from ssp.rewards.boxed import boxed_match

TASK = TaskConfig(train_size=40, probe_size=3, test_size=4)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def code_source(path, **fields):
    fields = {"solution": "", "answer": "", "domain": "", "tests": "tests", **fields}
    return DataSource(path=path, fields=FieldMap(**fields), domain="code", reward="code_tests")


def test_the_stage_loader_keeps_golds_as_written_the_data_commands_normalise_them(tmp_path):
    records = [
        {"problem": "Half of one?", "answer": " $\\frac{1}{2}$ ", "domain": "a"},
        {"problem": "Clips sold?", "answer": "48 + 24 = 72.\n#### 72", "domain": "a"},
        {"problem": "Boxed?", "solution": "So $\\boxed{1\\,024}$.", "domain": "a"},
        {"problem": "Lost?", "answer": "", "domain": "a"},  # an empty gold: kept unscorable here, set aside there
    ]
    path = write_jsonl(tmp_path / "m.jsonl", records)
    rows = load_split([DataSource(path=path, reward="math_verify")], TASK, "data.probe")
    # math_verify normalises golds itself; boxed_match compares the gold and the box under one key.
    assert [row["answer"] for row in rows] == [" $\\frac{1}{2}$ ", "48 + 24 = 72.\n#### 72", "1\\,024", ""]
    answered = write_jsonl(tmp_path / "a.jsonl", [record for record in records if "answer" in record])
    reader = ProblemReader()
    problems = reader.read([DataSource(path=answered, reward="math_verify")], "sources", with_candidates=False)
    assert [problem["answer"] for problem in problems] == ["\\frac{1}{2}", "72"]
    assert reader.counts["no_answer"] == 1


def test_boxed_match_on_file_golds_compares_like_with_like(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [{"problem": "Big?", "answer": "1\\,000", "domain": "a"}])
    rows = load_split([DataSource(path=path)], TASK, "data.test")
    assert boxed_match(["so \\boxed{1\\,000}", "\\boxed{1000}"], [rows[0]["answer"]] * 2) == [1.0, 0.0]


def test_the_data_commands_do_not_read_solutions_they_do_not_need(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"problem": "p", "answer": "1", "solution": None, "domain": "a"}])
    problems = ProblemReader().read([DataSource(path=path, reward="math_verify")], "sources", with_candidates=False)
    assert [problem["answer"] for problem in problems] == ["1"]


def test_the_stage_loader_checks_tests_and_compiles_preludes(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"problem": "p", "tests": "assert f(1 ==", "domain": "code"}])
    with pytest.raises(DataError, match=r"^data.probe.0: row 0: field 'tests': test code does not parse"):
        load_split([code_source(path)], TASK, "data.probe")
    record = {"problem": "p", "tests": "assert f() == 1", "setup": "def broken(", "domain": "code"}
    path = write_jsonl(tmp_path / "p.jsonl", [record])
    with pytest.raises(DataError, match=r"^data.test.0: row 0: field 'setup' does not compile: "):
        load_split([code_source(path, prelude="setup")], TASK, "data.test")


def test_scored_code_rows_need_their_tests_training_rows_do_not(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"problem": "p", "solution": "def f(): pass", "domain": "code"}])
    source = DataSource(path=path, reward="code_tests", fields=FieldMap(answer=""))
    (row,) = load_split([source], TASK, "data.train", for_training=True)
    assert row["answer"] is None and "tests" not in row and row["solutions"] == ["def f(): pass"]
    message = r"data.probe.0: row 0 has no field '' \(fields.tests\): code problems are checked by their tests"
    with pytest.raises(DataError, match=message):
        load_split([source], TASK, "data.probe")


def test_the_first_record_of_a_problem_gives_its_gold_and_label_the_others_add_solutions(tmp_path):
    records = [
        {"problem": "1+1?", "solution": "\\boxed{2}", "answer": "2", "domain": "a"},
        {"problem": "1+1?", "solution": "two: \\boxed{2}", "answer": "3", "domain": "b"},
        {"problem": "1+1?", "solution": "\\boxed{2}", "domain": "b"},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", records)
    (row,) = load_split([DataSource(path=path)], TASK, "data.train", for_training=True)
    assert (row["answer"], row["domain"], row["solutions"]) == ("2", "a", ["\\boxed{2}", "two: \\boxed{2}"])
    reader = ProblemReader()
    (problem,) = reader.read([DataSource(path=path)], "sources", with_candidates=True)
    assert (problem["answer"], problem["domain"], len(problem["candidates"])) == ("2", "a", 3)  # every candidate
    assert problem["origin"] == {"source": path, "row": 0}


def test_the_set_aside_mode_counts_what_the_strict_mode_drops_or_refuses(tmp_path):
    records = [
        {"problem": "kept", "answer": "1", "type": "Algebra", "solution": "\\boxed{1}"},
        {"problem": "no label", "answer": "1", "type": "Logic", "solution": "\\boxed{1}"},
        {"problem": "no gold", "answer": "", "type": "Algebra", "solution": ["a", "b"]},
        {"problem": "over the limit", "answer": "1", "type": "Algebra", "solution": "\\boxed{1}"},
        {"problem": "not chosen", "answer": "1", "type": "Geometry", "solution": "\\boxed{1}"},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", records)
    domain_map = {"Algebra": "algebra", "Geometry": "geometry"}
    source = DataSource(path=path, fields=FieldMap(domain="type"), domain_map=domain_map, domains=["algebra"], limit=1)
    reader = RowReader(needs_solutions=True, set_aside=True)
    assert [row["problem"] for row in reader.read([source], "sources")] == ["kept"]
    assert [(row["problem"], row["set_aside"]) for row in reader.aside] == [
        ("no label", "unmapped"),
        ("no gold", "no_answer"),
        ("over the limit", "excluded"),
        ("not chosen", "excluded"),
    ]
    assert reader.labels.report()["unmapped_labels"] == {"Logic": 1}
    problems = ProblemReader()
    problems.read([source], "sources", with_candidates=True)
    assert problems.problem_counts(None, 1) == {
        "in": 5,
        "unmapped": 1,
        "no_answer": 1,
        "excluded": 2,
        "contaminated": 0,
        "kept": 1,
    }
    assert (problems.counts["candidates_in"], problems.counts["candidates_set_aside"]) == (6, 5)
    # The stages drop the unmapped and excluded problems silently; the empty gold is kept, never correct.
    rows = RowReader().read_source(source, "data.probe.0")
    assert [(row["problem"], row["answer"]) for row in rows] == [("kept", "1")]


def test_keep_rows_applies_domains_then_the_limit_per_domain():
    rows = [{"domain": d} for d in ("a", "b", "a", "c", "a", "b")]
    source = DataSource(domains=["a", "b"], limit=2)
    assert [row["domain"] for row in keep_rows(rows, source)] == ["a", "b", "a", "b"]


def test_benchmark_fields_are_checked_like_a_sources(tmp_path):
    (tmp_path / "humaneval").mkdir()
    record = {"task_id": "HumanEval/0", "prompt": "def f(:\n", "test": "def check(f):\n    pass", "entry_point": "f"}
    (tmp_path / "humaneval" / "HumanEval.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=r"^humaneval: .*HumanEval.jsonl row 0: field 'prelude' does not compile: "):
        load_benchmark("humaneval", tmp_path)
    (tmp_path / "aime25").mkdir()
    (tmp_path / "aime25" / "test.jsonl").write_text(json.dumps({"id": "a", "problem": "1+1?", "answer": "two"}))
    message = r"^aime25: .*test.jsonl row 0: field 'answer' 'two' is not an integer answer: invalid literal for int"
    with pytest.raises(DataError, match=message):
        load_benchmark("aime25", tmp_path)
