"""`ssp data rl`: decontaminated prompt/answer and prompt/tests sets that the RL stage's loader reads."""

import json

import pytest
import yaml

from ssp.cli import main
from ssp.config import DataSource, FieldMap, TaskConfig
from ssp.data.labels import MATH_SUBDOMAINS
from ssp.data.loading import DataError, load_split
from ssp.rewards.code import LEETCODE_PRELUDE, code_tests
from ssp.signal.run import rl_dataset


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_recipe(tmp_path, recipe):
    path = tmp_path / "rl_set.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_math_set_is_labelled_decontaminated_and_read_by_the_rl_loader(tmp_path, shared_data):
    without_number_theory = {k: v for k, v in MATH_SUBDOMAINS.items() if k != "Number Theory"}
    math_test = str(shared_data / "math_train" / "test_minus_math500.jsonl")
    gsm8k = str(shared_data / "gsm8k" / "train.jsonl")
    recipe = {
        "output": str(tmp_path / "rl" / "math.jsonl"),
        "sources": [
            {"path": math_test, "fields": {"domain": "type"}, "domain_map": without_number_theory, "limit": 40},
            {"path": gsm8k, "fields": {"problem": "question", "domain": ""}, "domain": "arithmetic", "limit": 30},
        ],
        "decontaminate": {"data_dir": str(shared_data)},
    }
    recipe["sources"][0]["reward"] = recipe["sources"][1]["reward"] = "math_verify"
    assert main(["data", "rl", write_recipe(tmp_path, recipe)]) == 0

    report = json.loads((tmp_path / "rl" / "math.report.json").read_text())
    problems = report["problems"]
    assert problems["in"] == 4500 + 7473
    set_aside = problems["unmapped"] + problems["no_answer"] + problems["excluded"] + problems["contaminated"]
    assert problems["in"] == set_aside + problems["kept"]
    number_theory = sum(
        r["type"] == "Number Theory" for r in read_jsonl(shared_data / "math_train" / "test_minus_math500.jsonl")
    )
    assert report["unmapped_labels"] == {"Number Theory": number_theory} == {"Number Theory": problems["unmapped"]}
    assert report["decontamination"]["checked"] == 4 * 40 + 30  # only problems within the limits are compared
    assert problems["contaminated"] == report["decontamination"]["dropped"] > 0
    assert list(report["decontamination"]["benchmarks"]) == ["aime24", "aime25", "hmmt25", "amc23", "math500", "gsm8k"]
    assert sum(report["by_subdomain"].values()) == problems["kept"]

    source = DataSource(path=str(tmp_path / "rl" / "math.jsonl"), reward="math_verify")
    rows = load_split([source], TaskConfig(), "rl.data")
    assert len(rows) == problems["kept"]
    assert {row["domain"] for row in rows} == {"algebra", "geometry", "calculus", "statistics", "arithmetic"}
    gsm8k_rows = read_jsonl(shared_data / "gsm8k" / "train.jsonl")
    first = next(row for row in rows if row["domain"] == "arithmetic")
    original = next(r for r in gsm8k_rows if r["question"] == first["problem"])
    assert (
        first["answer"] == original["answer"].rsplit("####", 1)[1].strip()
    )  # the text after ####, as rewards read it
    dataset = rl_dataset(rows, "{problem}\nAnswer in \\boxed{}.", None)
    assert dataset.column_names == ["prompt", "answer", "domain"]
    assert dataset[0]["prompt"][0]["content"].endswith("\nAnswer in \\boxed{}.")


def test_code_set_keeps_tests_and_is_read_by_the_rl_loader(tmp_path, shared_data):
    recipe = {
        "output": str(tmp_path / "code.jsonl"),
        "sources": [
            {
                "path": str(shared_data / "rllm_code" / "codeforces_test.json"),
                "fields": {"solution": "", "answer": "", "domain": "", "tests": "tests"},
                "domain": "code",
                "reward": "code_tests",
                "limit": 25,
            }
        ],
        "decontaminate": {"data_dir": str(shared_data), "benchmarks": ["code"]},
    }
    assert main(["data", "rl", write_recipe(tmp_path, recipe)]) == 0
    report = json.loads((tmp_path / "code.report.json").read_text())
    assert report["problems"]["kept"] + report["problems"]["contaminated"] == 25
    source = DataSource(path=str(tmp_path / "code.jsonl"), reward="code_tests", fields=FieldMap(tests="tests"))
    rows = load_split([source], TaskConfig(), "rl.stages.2.data")
    originals = {
        r["problem"]: r["tests"] for r in json.loads((shared_data / "rllm_code" / "codeforces_test.json").read_text())
    }
    assert len(rows) == report["problems"]["kept"] and all(row["tests"] == originals[row["problem"]] for row in rows)
    assert rl_dataset(rows, "{problem}", None).column_names == ["prompt", "answer", "domain", "tests"]


def test_mixing_math_and_code_sources_is_refused(tmp_path, shared_data, capsys):
    recipe = {
        "output": str(tmp_path / "mixed.jsonl"),
        "sources": [
            {"path": str(shared_data / "aime24" / "test.jsonl"), "domain": "math", "reward": "math_verify"},
            {
                "path": str(shared_data / "rllm_code" / "codeforces_test.json"),
                "domain": "code",
                "reward": "code_tests",
            },
        ],
    }
    assert main(["data", "rl", write_recipe(tmp_path, recipe)]) == 2
    assert "sources: mixes math and code rewards; write one set per kind" in capsys.readouterr().err
    assert not (tmp_path / "mixed.jsonl").exists()


def test_a_prelude_column_reaches_the_code_reward_through_the_rl_dataset(tmp_path, shared_data):
    # LeetCode solutions use `List[int]` without importing it: they pass only with the prelude run before them.
    leetcode = json.loads((shared_data / "rllm_code" / "leetcode_test.json").read_text())[0]
    record = {"problem": leetcode["problem"], "tests": leetcode["tests"], "prelude": LEETCODE_PRELUDE}
    path = tmp_path / "leetcode.jsonl"
    path.write_text(json.dumps(record) + "\n")
    fields = FieldMap(solution="", answer="", domain="", tests="tests", prelude="prelude")
    source = DataSource(path=str(path), fields=fields, domain="code", reward="code_tests")
    rows = load_split([source], TaskConfig(), "rl.data")
    assert rows[0]["prelude"] == LEETCODE_PRELUDE
    dataset = rl_dataset(rows, "{problem}", None)
    assert dataset.column_names == ["prompt", "answer", "domain", "tests", "prelude"]
    response = f"```python\n{leetcode['solutions']}\n```"
    columns = {name: list(dataset[name]) for name in ("tests", "prelude")}
    assert code_tests([response], **columns) == [1.0]
    assert code_tests([response], tests=columns["tests"]) == [0.0]  # NameError: List


def test_a_prelude_that_is_not_a_string_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "p", "tests": "assert f() == 1", "prelude": 3}) + "\n")
    fields = FieldMap(solution="", answer="", domain="", tests="tests", prelude="prelude")
    source = DataSource(path=str(path), fields=fields, domain="code", reward="code_tests")
    with pytest.raises(DataError, match=r"rl.data.0: row 0: field 'prelude' must be a string of code"):
        load_split([source], TaskConfig(), "rl.data")
