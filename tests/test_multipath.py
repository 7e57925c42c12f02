"""`ssp data multipath`: a teacher-sample file with correct, wrong, duplicate, unparseable and too-long candidates."""

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from ssp.cli import main
from ssp.config import MultipathConfig, RLSetConfig, load_recipe
from ssp.data.labels import MATH_SUBDOMAINS
from ssp.data.rl_sets import check_rl_set_config
from ssp.data.synthetic import make_splits
from ssp.generation.multipath import check_multipath_config, select_paths
from ssp.rewards.code import LEETCODE_PRELUDE, CodeResult
from ssp.rewards.math_answers import MathResult
from ssp.sandbox.pool import WorkerStartError

REPO = Path(__file__).resolve().parents[1]
DEMO_SFT = REPO / "recipes" / "demo" / "sft.yaml"

# Problem A: several candidates as rows. Two correct and different, one exact copy, one near copy, one wrong, one
# without a final answer.
A = "Solve for x: 2x = 1."
A1 = (
    "We divide both sides of the equation by two, which leaves x alone on the left side; the right side "
    "becomes one half, and checking by substitution gives two times one half equals one, as required. "
    "So \\boxed{\\frac{1}{2}}."
)
A2 = "Think of x as an unknown length: doubling it gives a unit length, so x is a half, in decimals \\boxed{0.5}."
A_NEAR = A1.replace("as required", "as needed")
# Problem B: candidates as a list field. Three correct paths (B3 shares most of its wording with B1), one too long.
B = "A rectangle has sides 3 and 4. What is its perimeter?"
B1 = "The perimeter adds all four sides: 3 + 4 + 3 + 4 gives \\boxed{14}, counting each side once around the shape."
B2 = "Twice the sum of length and width: 2 times 7 is \\boxed{14}."
B3 = "The perimeter adds all four sides: 3 + 4 + 3 + 4 gives \\boxed{14}, going around the rectangle one time."
B_LONG = "\\boxed{14} " + "and so on " * 400
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0"
CODE_OK = "Add them.\n```python\ndef add(a, b):\n    return a + b\n```"
CODE_WRONG = "```python\ndef add(a, b):\n    return a - b\n```"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture
def teacher_files(tmp_path, shared_data):
    math500_problem = json.loads((shared_data / "math500" / "test.jsonl").read_text().splitlines()[0])["problem"]
    math_rows = [{"problem": A, "answer": "\\frac{1}{2}", "type": "Algebra", "solution": s} for s in (A1, A2, A1)]
    math_rows += [
        {"problem": A, "answer": "\\frac{1}{2}", "type": "Algebra", "solution": s}
        for s in (A_NEAR, "Clearly \\boxed{3}.", "I think it is one half.")
    ]
    math_rows += [
        {"problem": B, "answer": "14", "type": "Geometry", "solution": [B1, B2, B3, B_LONG]},
        {"problem": "Which door hides the prize?", "answer": "2", "type": "Logic", "solution": "\\boxed{2}"},
        {"problem": math500_problem, "answer": "1", "type": "Precalculus", "solution": "\\boxed{1}"},
        {"problem": "What is 2+2?", "answer": "4", "type": "Prealgebra", "solution": ["\\boxed{5}", "\\boxed{3}"]},
        {"problem": "How many primes lie in (n!+1, n!+n)?", "answer": "", "type": "Number Theory", "solution": "0"},
    ]
    code_rows = [{"prompt": "Write add(a, b).", "tests": ADD_TESTS, "solutions": [CODE_OK, CODE_WRONG, "no code"]}]
    return write_jsonl(tmp_path / "math.jsonl", math_rows), write_jsonl(tmp_path / "code.jsonl", code_rows)


def recipe_file(tmp_path, math_path, code_path, **extra):
    recipe = {
        "output": str(tmp_path / "out" / "sft.jsonl"),
        "sources": [
            {
                "path": math_path,
                "fields": {"problem": "problem", "solution": "solution", "answer": "answer", "domain": "type"},
                "domain_map": {label: d for label, d in MATH_SUBDOMAINS.items()},
                "reward": "math_verify",
            },
            {
                "path": code_path,
                "fields": {"problem": "prompt", "solution": "solutions", "answer": "", "domain": "", "tests": "tests"},
                "domain": "code",
                "reward": "code_tests",
            },
        ],
        "max_paths": 2,
        **extra,
    }
    path = tmp_path / "multipath.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_mixed_teacher_samples_keep_exactly_the_expected_paths(tmp_path, teacher_files, tiny_model_dir, shared_data):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    lengths = {text: len(tokenizer(text)["input_ids"]) for text in (A1, A2, B1, B2, B3, B_LONG, CODE_OK)}
    assert lengths[B_LONG] > 1000 and max(n for t, n in lengths.items() if t != B_LONG) <= 1000  # the premise
    recipe = recipe_file(tmp_path, *teacher_files, max_tokens=1000, tokenizer=str(tiny_model_dir))

    assert main(["data", "multipath", recipe, f"decontaminate.data_dir={shared_data}"]) == 0

    rows = [json.loads(line) for line in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    assert rows == [
        {"problem": A, "solutions": [A1, A2], "answer": "\\frac{1}{2}", "domain": "algebra"},
        {"problem": B, "solutions": [B1, B2], "answer": "14", "domain": "geometry"},
        {
            "problem": "Write add(a, b).",
            "solutions": [CODE_OK],
            "answer": None,
            "domain": "code",
            "tests": ADD_TESTS,
            "prelude": "",
        },
    ]
    report = json.loads((tmp_path / "out" / "sft.report.json").read_text())
    assert report["problems"] == {
        "in": 7,
        "unmapped": 1,
        "no_answer": 1,
        "excluded": 0,
        "contaminated": 1,
        "without_paths": 1,
        "kept": 3,
    }
    assert report["candidates"] == {
        "in": 18,
        "of_dropped_problems": 3,
        "too_long": 1,
        "unparseable": 2,
        "wrong": 4,
        "unverifiable": 0,
        "duplicate": 2,
        "beyond_max_paths": 1,
        "kept": 5,
    }
    assert report["paths_per_problem"] == {"0": 1, "1": 1, "2": 2}
    assert report["by_subdomain"] == {
        "algebra": {"problems": 1, "paths": 2},
        "code": {"problems": 1, "paths": 1},
        "geometry": {"problems": 1, "paths": 2},
    }
    assert report["unmapped_labels"] == {"Logic": 1}
    contamination = report["decontamination"]
    assert contamination["dropped"] == 1 and contamination["dropped_by_benchmark"]["math500"] == 1
    (dropped,) = contamination["dropped_rows"]
    assert dropped["row"] == 8 and dropped["matches"][0]["benchmark"] == "math500"
    assert dropped["matches"][0]["benchmark_row"] == 0
    # Every benchmark of both kinds was checked (the data has math and code problems).
    assert set(contamination["benchmarks"]) == {"aime24", "aime25", "hmmt25", "amc23", "math500", "gsm8k"} | {
        "humaneval",
        "mbpp",
        "leetcode",
        "lcb",
    }


def test_select_paths_prefers_the_most_different_and_is_deterministic():
    base = "one two three four five six seven eight nine ten"
    close = "one two three four five six seven eight nine eleven"  # shares 7 of its 8 trigrams with base
    far = "alpha beta gamma delta epsilon zeta eta theta"
    middle = "one two three four five alpha beta gamma delta"
    paths, duplicates, surplus = select_paths([base, close, middle, far, base], 3, 3, 0.7)
    assert (paths, duplicates, surplus) == ([base, far, middle], 2, 0)
    assert select_paths([base, middle, far], 2, 3, 0.7) == ([base, far], 0, 1)
    assert select_paths([], 2, 3, 0.7) == ([], 0, 0)


def test_paths_shorter_than_similarity_n_are_compared_on_their_words():
    # Two words each: no trigram to share, yet one is the other with one word added.
    assert select_paths(["\\boxed{14}", "So \\boxed{14}"], 4, 3, 0.7) == (["\\boxed{14}"], 1, 0)
    assert select_paths(["So, \\boxed{14}.", "\\boxed{14}"], 4, 3, 0.7) == (["So, \\boxed{14}."], 1, 0)
    assert select_paths(["\\boxed{14}", "\\boxed{15}"], 4, 3, 0.7) == (["\\boxed{14}", "\\boxed{15}"], 0, 0)
    # A whole derivation ending in the same box adds far more than n words: a different path, not a copy.
    derivation = "Adding the four sides 3 + 4 + 3 + 4 gives \\boxed{14}"
    assert select_paths(["\\boxed{14}", derivation], 4, 3, 0.7) == (["\\boxed{14}", derivation], 0, 0)


@pytest.mark.parametrize(
    "override,message",
    [
        ("max_paths=0", "max_paths: must be >= 1, got 0"),
        ("decontaminate.benchmarks=[aime26]", "decontaminate.benchmarks: unknown benchmark 'aime26' (known: all,"),
        ("duplicate_threshold=1.5", "duplicate_threshold: must be in (0, 1], got 1.5"),
        ("max_tokens=100", "max_tokens: set tokenizer (or model) to count tokens with"),
        ("sources.0.reward=exact", "sources.0.reward: unknown reward 'exact'"),
        ("max_pathz=2", "unknown key max_pathz"),
        # The data has code problems, so the code benchmarks are checked by default: leetcode is local-only.
        ("seed=1", "decontaminate.data_dir: required for leetcode"),
    ],
)
def test_bad_recipes_stop_before_writing(tmp_path, teacher_files, capsys, override, message):
    recipe = recipe_file(tmp_path, *teacher_files)
    assert main(["data", "multipath", recipe, override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_rows_without_an_answer_are_named(tmp_path, capsys):
    path = write_jsonl(tmp_path / "t.jsonl", [{"problem": "p", "solution": "\\boxed{1}", "domain": "a"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"output": str(tmp_path / "o.jsonl"), "sources": [{"path": path}]}))
    assert main(["data", "multipath", str(recipe), "decontaminate.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert "sources.0: row 0 has no field 'answer' (fields.answer): math problems are checked against it" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_existing_output_is_refused(tmp_path, teacher_files, capsys):
    recipe = recipe_file(tmp_path, *teacher_files)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sft.jsonl").write_text("")
    assert main(["data", "multipath", recipe]) == 2
    assert "already exists; choose another or pass overwrite=true" in capsys.readouterr().err


def test_candidates_sampled_with_a_model_are_counted(tmp_path, tiny_model_dir, small_splits):
    problems = [{"problem": r["problem"], "answer": r["answer"], "domain": r["domain"]} for r in small_splits["probe"]]
    path = write_jsonl(tmp_path / "problems.jsonl", problems)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "output": str(tmp_path / "sampled.jsonl"),
                "sources": [{"path": path, "fields": {"solution": ""}}],
                "model": str(tiny_model_dir),
                "sampling": {"n": 3, "max_new_tokens": 12, "batch_size": 16},
                "max_tokens": 1000,  # counted with the model's tokenizer; samples cut at 12 tokens are too long
                "decontaminate": {"enabled": False},
            }
        )
    )
    assert main(["data", "multipath", str(recipe)]) == 0
    report = json.loads((tmp_path / "sampled.report.json").read_text())
    candidates = report["candidates"]
    assert candidates["in"] == 3 * len(problems)
    assert candidates["too_long"] > 0  # the untrained model's samples run into max_new_tokens
    assert sum(value for name, value in candidates.items() if name != "in") == candidates["in"]
    assert sum(report["paths_per_problem"].values()) == len(problems) == report["problems"]["in"]
    kept = (tmp_path / "sampled.jsonl").read_text().splitlines()
    assert len(kept) == report["problems"]["kept"]
    assert sum(len(json.loads(line)["solutions"]) for line in kept) == candidates["kept"]


def test_spectrum_stage_trains_on_a_multipath_build(tmp_path):
    train = make_splits(seed=0, train_size=48, probe_size=2, test_size=2)["train"]
    teacher = []
    for row in train:  # the two real paths, a copy of the first and a wrong one
        for solution in [*row["solutions"], row["solutions"][0], "So \\boxed{wrong}"]:
            teacher.append({"problem": row["problem"], "solution": solution, "answer": row["answer"]})
            teacher[-1]["domain"] = row["domain"]
    path = write_jsonl(tmp_path / "teacher.jsonl", teacher)
    recipe = tmp_path / "r.yaml"
    built = tmp_path / "sft.jsonl"
    recipe.write_text(yaml.safe_dump({"output": str(built), "sources": [{"path": path}]}))
    assert main(["data", "multipath", str(recipe), "decontaminate.enabled=false"]) == 0
    report = json.loads((tmp_path / "sft.report.json").read_text())
    assert report["candidates"]["kept"] == 96 and report["candidates"]["duplicate"] == 48

    out = tmp_path / "run"
    small = ["model.tiny.hidden_size=32", "model.tiny.num_layers=2", "model.tiny.num_heads=2"]
    small += ["model.tiny.intermediate_size=64", "task.probe_size=2", "task.test_size=2", "sft.max_steps=2"]
    small += ["sft.save_every=2", "sft.per_device_train_batch_size=8", "probe.sampling.n=2", "probe.ks=[1,2]"]
    small += ["probe.sampling.max_new_tokens=8", "fusion.k=2", "eval.base=false", "eval.greedy=false"]
    small += ["eval.sampling.n=2", "eval.sampling.max_new_tokens=8", "eval.ks=[1,2]"]
    source = [f"data.train.0.path={built}", "data.train.0.fields.solution=solutions"]
    assert main(["sft", str(DEMO_SFT), f"output_dir={out}", *small, *source]) == 0
    summary = json.loads((out / "data.json").read_text())["train"]
    assert summary == {
        "problems": 48,
        "by_domain": {"arithmetic": 12, "linear": 12, "modular": 12, "sequence": 12},
        "sft_examples": 96,
    }
    assert (out / "checkpoints" / "step-2" / "model.safetensors").is_file()
    assert (out / "spectrum" / "config.json").is_file()


@pytest.mark.parametrize(
    "recipe_path", sorted((REPO / "recipes" / "data").rglob("*.yaml")), ids=lambda p: p.parent.name + "/" + p.name
)
def test_shipped_data_recipes_validate(recipe_path, shared_data, monkeypatch):
    monkeypatch.chdir(REPO)  # the local recipes name ../shared/data relative to the repository root
    if recipe_path.name.startswith("sft_"):
        config = load_recipe(recipe_path, ["overwrite=true"], schema=MultipathConfig)
        check_multipath_config(config)
    else:
        config = load_recipe(recipe_path, ["overwrite=true"], schema=RLSetConfig)
        check_rl_set_config(config)
    assert config.output.startswith("data/") and config.decontaminate.enabled
    for source in config.sources:
        if source.fields.domain == "type":  # MATH's subjects: the documented table
            assert source.domain_map == MATH_SUBDOMAINS


def leetcode_rows(shared_data, count):
    """rLLM LeetCode training problems whose reference solutions use `List` without importing it."""
    rows = json.loads((shared_data / "rllm_code" / "leetcode_train.json").read_text())
    return [row for row in rows if "List[" in row["solutions"]][:count]


def test_each_code_problem_is_checked_with_its_own_prelude(tmp_path, shared_data):
    first, second = leetcode_rows(shared_data, 2)
    records = [
        {
            "problem": row["problem"],
            "tests": row["tests"],
            "setup": setup,
            "candidate": f"```python\n{row['solutions']}\n```",
        }
        for row, setup in ((first, LEETCODE_PRELUDE), (second, ""))
    ]
    path = write_jsonl(tmp_path / "leetcode.jsonl", records)
    fields = {"solution": "candidate", "answer": "", "domain": "", "tests": "tests", "prelude": "setup"}
    recipe = tmp_path / "r.yaml"
    source = {"path": path, "fields": fields, "domain": "code", "reward": "code_tests"}
    recipe.write_text(yaml.safe_dump({"output": str(tmp_path / "out.jsonl"), "sources": [source]}))
    common = [str(recipe), "decontaminate.enabled=false", "overwrite=true"]

    assert main(["data", "multipath", *common]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(row["problem"], row["prelude"]) for row in rows] == [(first["problem"], LEETCODE_PRELUDE)]
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert (report["candidates"]["kept"], report["candidates"]["wrong"]) == (1, 1)  # the second: NameError List

    # leetcode_prelude fills the prelude of problems that have none of their own.
    assert main(["data", "multipath", *common, "leetcode_prelude=true"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(row["problem"], row["prelude"]) for row in rows] == [
        (first["problem"], LEETCODE_PRELUDE),
        (second["problem"], LEETCODE_PRELUDE),
    ]


def test_math_verify_timeouts_are_reported_as_unverifiable(tmp_path, monkeypatch):
    statuses = iter(["timeout", "error", "correct", "wrong"])

    def check_answers(texts, golds):
        return [MathResult(status == "correct", status, "1") for status, _ in zip(statuses, texts, strict=False)]

    monkeypatch.setattr("ssp.rewards.scoring.check_answers", check_answers)
    rows = [
        {"problem": "p", "answer": "1", "domain": "algebra", "solution": [f"\\boxed{{1}} ({i})" for i in range(4)]}
    ]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "output": str(tmp_path / "o.jsonl"),
                "sources": [{"path": write_jsonl(tmp_path / "t.jsonl", rows), "reward": "math_verify"}],
            }
        )
    )
    assert main(["data", "multipath", str(recipe), "decontaminate.enabled=false"]) == 0
    candidates = json.loads((tmp_path / "o.report.json").read_text())["candidates"]
    assert (candidates["unverifiable"], candidates["wrong"], candidates["kept"]) == (2, 1, 1)


def test_a_failing_sandbox_stops_with_one_line_and_writes_nothing(tmp_path, teacher_files, capsys, monkeypatch):
    def broken(programs, tests, timeout=10, *, preludes=None):
        return [
            CodeResult(False, 0.0, "sandbox_error", ("sandbox_error",), "bwrap: No permissions\nmore")
            for _ in programs
        ]

    monkeypatch.setattr("ssp.rewards.code.check_programs", broken)
    recipe = recipe_file(tmp_path, *teacher_files)
    assert main(["data", "multipath", recipe, "decontaminate.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert (
        "ssp: error: the code sandbox failed on 3 of 3 candidates (bwrap: No permissions); see docs/sandbox.md" in err
    )
    assert "Traceback" not in err and not (tmp_path / "out").exists()

    def unavailable():
        raise WorkerStartError("probe program failed: no user namespaces")

    monkeypatch.setattr("ssp.rewards.scoring.get_sandbox", unavailable)
    assert main(["data", "multipath", recipe, "decontaminate.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert "ssp: error: the code sandbox cannot start (probe program failed: no user namespaces)" in err
    assert not (tmp_path / "out").exists()
