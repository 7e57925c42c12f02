"""`ssp data rl`: decontaminated prompt/answer and prompt/tests sets that the RL stage's loader reads."""

import json
from pathlib import Path

import pytest
import yaml

from ssp.cli import main
from ssp.config import DataSource, FieldMap, TaskConfig
from ssp.data.labels import MATH_SUBDOMAINS
from ssp.data.loading import DataError, load_split
from ssp.rewards.code import LEETCODE_PRELUDE, code_tests
from ssp.signal.run import rl_dataset

REPO = Path(__file__).resolve().parents[1]


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
    rows = load_split([source], TaskConfig(), "rl.data", "{problem}\nAnswer in \\boxed{}.")
    assert len(rows) == problems["kept"]
    assert {row["domain"] for row in rows} == {"algebra", "geometry", "calculus", "statistics", "arithmetic"}
    gsm8k_rows = read_jsonl(shared_data / "gsm8k" / "train.jsonl")
    first = next(row for row in rows if row["domain"] == "arithmetic")
    original = next(r for r in gsm8k_rows if r["question"] == first["problem"])
    assert (
        first["answer"] == original["answer"].rsplit("####", 1)[1].strip()
    )  # the text after ####, as rewards read it
    dataset = rl_dataset(rows, None)
    assert dataset.column_names == ["prompt", "answer", "domain", "correctness_reward"]
    assert set(dataset["correctness_reward"]) == {"math_verify"}
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
    assert rl_dataset(rows, None).column_names == ["prompt", "answer", "domain", "correctness_reward", "tests"]


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
    dataset = rl_dataset(rows, None)
    assert dataset.column_names == ["prompt", "answer", "domain", "correctness_reward", "tests", "prelude"]
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


def hendrycks_row(problem, solution, subject):
    """A row of EleutherAI/hendrycks_math: no answer field, the answer is boxed in the solution."""
    return {"problem": problem, "level": "Level 2", "type": subject, "solution": solution}


def test_probe_recipe_takes_answers_from_the_boxed_solutions(tmp_path, shared_data):
    math500 = read_jsonl(shared_data / "math500" / "test.jsonl")[0]
    subjects = {
        "algebra": [
            hendrycks_row("What is $1+1$?", "Adding, $1+1=\\boxed{2}$.", "Algebra"),
            hendrycks_row("Is 7 prime?", "Yes: it has no divisor but 1 and itself.", "Algebra"),  # no box
            hendrycks_row(math500["problem"], math500["solution"], "Precalculus"),  # MATH-500's: contaminated
        ],
        "geometry": [hendrycks_row("Half of 1?", "First $\\boxed{3}$, no: $\\boxed{\\frac{1}{2}}$.", "Geometry")],
        "precalculus": [hendrycks_row("What is $\\cos 0$?", "$\\cos 0 = \\boxed{1}$", "Precalculus")],
        "counting": [hendrycks_row("How many ways to order 3 books?", "$3! = \\boxed{6}$", "Counting & Probability")],
    }
    overrides = [f"output={tmp_path / 'probe.jsonl'}", f"decontaminate.data_dir={shared_data}"]
    for i, (subject, rows) in enumerate(subjects.items()):
        path = tmp_path / f"{subject}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        overrides.append(f"sources.{i}.path={path}")
    assert main(["data", "rl", str(REPO / "recipes" / "data" / "probe_math.yaml"), *overrides]) == 0

    assert read_jsonl(tmp_path / "probe.jsonl") == [
        {"problem": "What is $1+1$?", "answer": "2", "domain": "algebra"},
        {"problem": "Half of 1?", "answer": "\\frac{1}{2}", "domain": "geometry"},
        {"problem": "What is $\\cos 0$?", "answer": "1", "domain": "calculus"},
        {"problem": "How many ways to order 3 books?", "answer": "6", "domain": "statistics"},
    ]
    report = json.loads((tmp_path / "probe.report.json").read_text())
    assert report["problems"] == {"in": 6, "unmapped": 0, "no_answer": 1, "excluded": 0, "contaminated": 1, "kept": 4}


def test_a_math_source_without_answer_or_solution_is_refused(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"problem": "p", "domain": "algebra"}) + "\n")
    recipe = {"output": str(tmp_path / "o.jsonl"), "sources": [{"path": str(path), "reward": "math_verify"}]}
    recipe["sources"][0]["fields"] = {"answer": "", "solution": ""}
    assert main(["data", "rl", write_recipe(tmp_path, recipe)]) == 2
    assert "ssp: error: sources.0.fields: math problems need an answer: set fields.answer" in capsys.readouterr().err


def leetcode_records(shared_data, preludes):
    """rLLM LeetCode training problems whose reference solutions use `List` without importing it."""
    rows = json.loads((shared_data / "rllm_code" / "leetcode_train.json").read_text())
    rows = [row for row in rows if "List[" in row["solutions"]][: len(preludes)]
    return [{**row, "setup": prelude} for row, prelude in zip(rows, preludes, strict=True)]


def test_leetcode_rows_carry_their_prelude_to_the_code_reward(tmp_path, shared_data):
    records = leetcode_records(shared_data, [LEETCODE_PRELUDE, ""])
    path = tmp_path / "leetcode.json"
    path.write_text(json.dumps(records))
    fields = {"solution": "", "answer": "", "domain": "", "tests": "tests", "prelude": "setup"}
    recipe = {
        "output": str(tmp_path / "code.jsonl"),
        "sources": [{"path": str(path), "fields": fields, "domain": "code", "reward": "code_tests"}],
        "decontaminate": {"data_dir": str(shared_data), "benchmarks": ["humaneval"]},
    }
    responses = [f"```python\n{record['solutions']}\n```" for record in records]

    def reward_of_reference_solutions():
        fields = FieldMap(tests="tests", prelude="prelude")
        source = DataSource(path=str(tmp_path / "code.jsonl"), fields=fields, reward="code_tests")
        dataset = rl_dataset(load_split([source], TaskConfig(), "rl.data"), None)
        return code_tests(responses, tests=list(dataset["tests"]), prelude=list(dataset["prelude"]))

    assert main(["data", "rl", write_recipe(tmp_path, recipe)]) == 0
    rows = read_jsonl(tmp_path / "code.jsonl")
    expected = [
        {"problem": r["problem"], "tests": r["tests"], "prelude": r["setup"], "domain": "code"} for r in records
    ]
    assert rows == expected
    assert reward_of_reference_solutions() == [1.0, 0.0]  # the second has no prelude: NameError List

    # leetcode_prelude gives LEETCODE_PRELUDE to the problems without a prelude of their own.
    assert main(["data", "rl", write_recipe(tmp_path, recipe), "leetcode_prelude=true", "overwrite=true"]) == 0
    assert [row["prelude"] for row in read_jsonl(tmp_path / "code.jsonl")] == [LEETCODE_PRELUDE] * 2
    assert reward_of_reference_solutions() == [1.0, 1.0]


def test_a_prelude_that_does_not_compile_is_named(tmp_path, shared_data, capsys):
    path = tmp_path / "leetcode.json"
    path.write_text(json.dumps(leetcode_records(shared_data, ["from typing import *", "def broken("])))
    fields = {"solution": "", "answer": "", "domain": "", "tests": "tests", "prelude": "setup"}
    recipe = {
        "output": str(tmp_path / "code.jsonl"),
        "sources": [{"path": str(path), "fields": fields, "domain": "code", "reward": "code_tests"}],
    }
    assert main(["data", "rl", write_recipe(tmp_path, recipe), "decontaminate.enabled=false"]) == 2
    assert "ssp: error: sources.0: row 1: field 'setup' does not compile: " in capsys.readouterr().err
    assert not (tmp_path / "code.jsonl").exists()


def test_code_decontamination_without_a_data_dir_is_refused_up_front(tmp_path, shared_data, capsys):
    recipe = {
        "output": str(tmp_path / "code.jsonl"),
        "sources": [
            {
                "path": str(shared_data / "rllm_code" / "codeforces_test.json"),
                "fields": {"solution": "", "answer": "", "domain": "", "tests": "tests"},
                "domain": "code",
                "reward": "code_tests",
            }
        ],
    }
    assert main(["data", "rl", write_recipe(tmp_path, recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssp: error: decontaminate.data_dir: required for leetcode")
    assert "(no hub copy): set it to a folder laid out like ../shared/data" in err
    assert not (tmp_path / "code.jsonl").exists()
