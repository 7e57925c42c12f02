import json

import datasets
import pytest

from ssp.config import DataSource, FieldMap, TaskConfig
from ssp.data.loading import DataError, load_split, sft_examples

TASK = TaskConfig(train_size=40, probe_size=3, test_size=4)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_synthetic_splits_carry_reward_and_domain():
    rows = load_split([DataSource(split="test")], TASK, "data.test")
    assert len(rows) == 16
    assert {r["reward"] for r in rows} == {"boxed_match"}
    assert rows[0]["id"] == "test-0"
    only = load_split([DataSource(split="probe", domains=["linear"])], TASK, "data.probe")
    assert {r["domain"] for r in only} == {"linear"} and len(only) == 3


def test_rows_with_the_same_problem_become_one_multipath_problem(tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"q": "1+1?", "sol": "1+1=2. \\boxed{2}", "topic": "arith"},
            {"q": "1+1?", "sol": "2-0=2... \\boxed{2}", "topic": "arith"},
            {"q": "1+1?", "sol": "1+1=2. \\boxed{2}", "topic": "arith"},  # exact duplicate path
            {"q": "2*3?", "sol": ["2*3=6. \\boxed{6}", "3+3=6. \\boxed{6}"], "topic": "arith"},
        ],
    )
    source = DataSource(path=str(path), fields=FieldMap(problem="q", solution="sol", domain="topic"))
    rows = load_split([source], TASK, "data.train", "Q: {problem}", for_training=True)
    assert [(r["problem"], len(r["solutions"]), r["answer"]) for r in rows] == [("1+1?", 2, "2"), ("2*3?", 2, "6")]
    examples = sft_examples(rows, paths_per_problem=1, system_prompt=None)
    assert len(examples) == 2
    assert examples[0]["prompt"] == [{"role": "user", "content": "Q: 1+1?"}]
    assert examples[0]["completion"] == [{"role": "assistant", "content": "1+1=2. \\boxed{2}"}]
    assert len(sft_examples(rows, 2, "be brief")) == 4
    assert sft_examples(rows, 2, "be brief")[0]["prompt"][0] == {"role": "system", "content": "be brief"}


def test_a_source_template_replaces_the_recipe_template_for_its_rows(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"problem": "Add 1 and 2.", "answer": "3", "domain": "math"}])
    code = write_jsonl(
        tmp_path / "code.jsonl", [{"problem": "Reverse a list.", "tests": "assert True", "domain": "code"}]
    )
    sources = [
        DataSource(path=str(path)),
        DataSource(path=str(code), fields=FieldMap(tests="tests"), reward="code_tests",
                   prompt_template="{problem}\nWrite Python."),
    ]  # fmt: skip
    rows = load_split(sources, TASK, "data.probe", "{problem} Box the answer.")
    assert [row["prompt"] for row in rows] == ["Add 1 and 2. Box the answer.", "Reverse a list.\nWrite Python."]


def test_parquet_and_json_files(tmp_path):
    records = [
        {"problem": "p1", "solution": "\\boxed{1}", "answer": "1", "domain": "a"},
        {"problem": "p2", "solution": "\\boxed{2}", "answer": "2", "domain": "b"},
    ]
    datasets.Dataset.from_list(records).to_parquet(str(tmp_path / "t.parquet"))
    (tmp_path / "t.json").write_text(json.dumps({"data": records}))
    for name in ("t.parquet", "t.json"):
        rows = load_split([DataSource(path=str(tmp_path / name))], TASK, "data.train", for_training=True)
        assert [(r["problem"], r["answer"], r["domain"]) for r in rows] == [("p1", "1", "a"), ("p2", "2", "b")]


def test_math_types_map_onto_subdomains(shared_data):
    source = DataSource(
        path=str(shared_data / "math_train" / "test_minus_math500.jsonl"),
        fields=FieldMap(domain="type"),
        domain_map={
            "Algebra": "algebra",
            "Intermediate Algebra": "algebra",
            "Geometry": "geometry",
            "Precalculus": "calculus",
            "Counting & Probability": "statistics",
        },
        reward="boxed_match",
        limit=5,
    )
    rows = load_split([source], TASK, "data.probe")
    assert sorted({r["domain"] for r in rows}) == ["algebra", "calculus", "geometry", "statistics"]
    assert all(sum(r["domain"] == d for r in rows) == 5 for d in ("algebra", "geometry"))
    assert all(r["answer"] for r in rows)


def test_eval_rows_need_no_solution(shared_data):
    source = DataSource(
        path=str(shared_data / "aime24" / "test.jsonl"), domain="aime", limit=3, fields=FieldMap(solution="")
    )
    rows = load_split([source], TASK, "data.test")
    assert len(rows) == 3 and all(r["solutions"] == [] and r["answer"] for r in rows)


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"problem": "p", "solution": "\\\\boxed{1}", "domain": "a"}', "not json"], "line 2 is not valid JSON"),
        (['{"solution": "x", "domain": "a"}'], "data.train.0: row 0 has no field 'problem' (fields.problem)"),
        (['{"problem": "", "solution": "x", "domain": "a"}'], "field 'problem' must be a non-empty string"),
        (['{"problem": "p", "solution": 5, "domain": "a"}'], "field 'solution' must be a string or a list of strings"),
        (
            ['{"problem": "p", "solution": "\\\\boxed{1}"}'],
            "row 0: no domain (field 'domain') and data.train.0.domain",
        ),
        (["[1, 2]"], "line 1 is a list, expected an object"),
    ],
)
def test_malformed_rows_name_row_and_field(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_split([DataSource(path=str(path))], TASK, "data.train", for_training=True)
    assert message in str(info.value)


def test_scored_rows_need_an_answer_training_rows_do_not(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"problem": "p", "solution": "no box here", "domain": "a"}])
    rows = load_split([DataSource(path=str(path))], TASK, "data.train", for_training=True)
    assert rows[0]["answer"] is None and rows[0]["solutions"] == ["no box here"]
    with pytest.raises(DataError, match="data.probe.0: row 0 has no answer: no field 'answer' and no .boxed"):
        load_split([DataSource(path=str(path))], TASK, "data.probe")


def test_unsupported_extension_and_empty_result(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        load_split([DataSource(path=str(tmp_path / "x.csv"))], TASK, "data.train")
    path = write_jsonl(tmp_path / "t.jsonl", [{"problem": "p", "solution": "\\boxed{1}", "domain": "a"}])
    with pytest.raises(DataError, match="data.train.0: no rows left"):
        load_split([DataSource(path=str(path), domains=["b"])], TASK, "data.train")
