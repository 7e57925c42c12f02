"""`ssp data decontaminate`: normalised word n-gram matching against the benchmarks of ../shared/data."""

import json
from pathlib import Path

import pytest

from ssp.cli import main
from ssp.data.benchmarks import load_benchmark
from ssp.data.decontaminate import BenchmarkIndex, ngrams, normalize_words, resolve_benchmarks
from ssp.data.synthetic import make_splits

MATH_BENCHMARKS = ["math500", "aime24", "aime25", "hmmt25", "amc23", "gsm8k"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def contains(text, gram):
    return f" {gram} " in f" {' '.join(normalize_words(text))} "


def test_normalisation_and_ngrams():
    assert normalize_words("Let $x^2+1 = y_0$; FIND x, y!") == ["let", "x", "2", "1", "y", "0", "find", "x", "y"]
    assert ngrams("A b, c. D", 2) == ["a b", "b c", "c d"]
    assert ngrams("Short one.", 10) == ["short one"]  # shorter than n: the whole text is the one gram
    assert ngrams("?!", 10) == []


def test_index_reports_each_benchmark_with_its_row_and_first_shared_gram():
    index = BenchmarkIndex({"a": ["zero one two three", "x y z w"], "b": ["two three four five"]}, n=3)
    assert index.matches("and one two three four") == [
        {"benchmark": "a", "benchmark_row": 0, "ngram": "one two three"},
        {"benchmark": "b", "benchmark_row": 0, "ngram": "two three four"},
    ]
    assert index.matches("one two and three four") == []
    assert index.summary() == {"a": {"problems": 2, "ngrams": 4}, "b": {"problems": 1, "ngrams": 2}}


def test_a_benchmark_problem_shorter_than_n_is_found_inside_a_longer_text():
    index = BenchmarkIndex({"b": ["A long problem: " + " ".join(["word"] * 12), "Simplify $\\sqrt{242}$."]}, n=10)
    assert index.matches("First, simplify sqrt(242); then add 3 to it and report the sum.") == [
        {"benchmark": "b", "benchmark_row": 1, "ngram": "simplify sqrt 242"}
    ]
    assert index.matches("Simplify $\\sqrt{242}$.") == [
        {"benchmark": "b", "benchmark_row": 1, "ngram": "simplify sqrt 242"}
    ]
    assert index.matches("Simplify sqrt(2420) and then simplify sqrt 24 2.") == []  # whole words only


def test_short_math500_problems_inside_longer_training_text_are_dropped(tmp_path, shared_data):
    short = [
        row["problem"]
        for row in read_jsonl(shared_data / "math500" / "test.jsonl")
        if len(normalize_words(row["problem"])) < 10
    ]
    assert len(short) == 31
    rows = [
        {"problem": f"Warm-up before the contest. {problem} Show every step of your work clearly."}
        for problem in short
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "clean.jsonl"
    args = ["--out", str(out), "--benchmarks", "math500", "--data-dir", str(shared_data)]
    assert main(["data", "decontaminate", str(path), *args]) == 0
    report = json.loads((tmp_path / "clean.report.json").read_text())
    assert (report["rows_in"], report["dropped"]) == (31, 31) and out.read_text() == ""
    for dropped in report["dropped_rows"]:
        assert dropped["matches"][0]["ngram"] == " ".join(normalize_words(short[dropped["row"]]))


def test_groups_expand_and_unknown_names_are_errors():
    assert resolve_benchmarks(["math", "aime24"]) == MATH_BENCHMARKS[1:5] + ["math500", "gsm8k"]
    assert resolve_benchmarks(["code"]) == ["humaneval", "mbpp", "leetcode", "lcb"]
    with pytest.raises(ValueError, match="benchmarks: unknown benchmark 'gsm9k'"):
        resolve_benchmarks(["gsm9k"])


def test_math500_problems_as_training_data_are_all_dropped(tmp_path, shared_data):
    out = tmp_path / "clean.jsonl"
    train = str(shared_data / "math500" / "test.jsonl")
    args = ["--out", str(out), "--benchmarks", "math500", "--data-dir", str(shared_data)]
    assert main(["data", "decontaminate", train, *args]) == 0
    assert read_jsonl(out) == []
    report = json.loads((tmp_path / "clean.report.json").read_text())
    assert (report["rows_in"], report["rows_kept"], report["dropped"]) == (500, 0, 500)
    assert report["dropped_by_benchmark"] == {"math500": 500}
    benchmark = [row["problem"] for row in load_benchmark("math500", data_dir=shared_data)]
    problems = [row["problem"] for row in read_jsonl(shared_data / "math500" / "test.jsonl")]
    for dropped in report["dropped_rows"]:
        match = dropped["matches"][0]
        assert contains(problems[dropped["row"]], match["ngram"])
        assert contains(benchmark[match["benchmark_row"]], match["ngram"])


def test_gsm8k_test_against_itself_drops_everything(tmp_path, shared_data):
    out = tmp_path / "clean.jsonl"
    gsm8k = str(shared_data / "gsm8k" / "test.jsonl")
    args = ["--field", "question", "--benchmarks", "gsm8k", "--data-dir", str(shared_data)]
    assert main(["data", "decontaminate", gsm8k, "--out", str(out), *args]) == 0
    report = json.loads((tmp_path / "clean.report.json").read_text())
    assert (report["rows_in"], report["rows_kept"], report["dropped"]) == (1319, 0, 1319)
    assert out.read_text() == ""


def test_leetcode_problems_do_not_match_through_rllm_shared_instructions(tmp_path, shared_data):
    # Every rLLM LeetCode problem (benchmark and training alike) carries the same instructions: only the
    # statements may match. A new problem in rLLM's wrapping is kept; the benchmark's own problems are dropped.
    leetcode = json.loads((shared_data / "rllm_code" / "leetcode_test.json").read_text())
    wrapped = leetcode[0]["problem"].split("\n\n", 1)[0] + "\n\nReturn the sum of the digits of n written in base 7."
    rows = [{"problem": wrapped}, {"problem": leetcode[0]["problem"]}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "clean.jsonl"
    args = ["--out", str(out), "--benchmarks", "leetcode", "--data-dir", str(shared_data)]
    assert main(["data", "decontaminate", str(path), *args]) == 0
    assert read_jsonl(out) == [rows[0]]


def test_unrelated_text_drops_nothing_and_rows_pass_unchanged(tmp_path, shared_data):
    splits = make_splits(seed=0, train_size=200, probe_size=8, test_size=8)
    rows = [{"problem": row["problem"], "solutions": row["solutions"]} for row in splits["train"]]
    rows += [
        {"problem": "The quick brown fox jumps over the lazy dog while the farmer sleeps in the afternoon sun."},
        {"problem": "Pack my box with five dozen liquor jugs, then carry the box to the old barn by the river."},
    ]
    path = tmp_path / "unrelated.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "clean.jsonl"
    assert main(["data", "decontaminate", str(path), "--out", str(out), "--data-dir", str(shared_data)]) == 0
    assert read_jsonl(out) == rows
    report = json.loads((tmp_path / "clean.report.json").read_text())
    assert report["dropped"] == 0 and report["dropped_rows"] == []
    assert set(report["benchmarks"]) == set(resolve_benchmarks(["all"]))


def test_math_train_split_against_every_math_benchmark(tmp_path, shared_data):
    inputs = [str(shared_data / "math_train" / name) for name in ("train.jsonl", "test_minus_math500.jsonl")]
    out = tmp_path / "math_train.jsonl"
    args = ["--out", str(out), "--benchmarks", ",".join(MATH_BENCHMARKS), "--data-dir", str(shared_data)]
    assert main(["data", "decontaminate", *inputs, *args]) == 0
    report = json.loads((tmp_path / "math_train.report.json").read_text())
    assert report["rows_in"] == 12000 and report["n"] == 10
    assert report["rows_kept"] + report["dropped"] == 12000 == len(read_jsonl(out)) + len(report["dropped_rows"])
    assert list(report["benchmarks"]) == MATH_BENCHMARKS
    assert report["dropped_by_benchmark"]["math500"] > 0
    records = {path: read_jsonl(Path(path)) for path in inputs}
    dropped_ids = set()
    for dropped in report["dropped_rows"]:
        record = records[dropped["input"]][dropped["row"]]
        dropped_ids.add(record["unique_id"])
        for match in dropped["matches"]:
            assert contains(record["problem"], match["ngram"])
    kept_ids = {row["unique_id"] for row in read_jsonl(out)}
    assert not kept_ids & dropped_ids
    assert len(kept_ids | dropped_ids) == 12000


@pytest.mark.parametrize(
    "args,message",
    [
        (["--benchmarks", "gsm9k"], "--benchmarks: unknown benchmark 'gsm9k'"),
        (["--n", "0"], "--n: must be >= 1, got 0"),
        (["--field", "statement", "--benchmarks", "math"], "row 0 has no text field 'statement' (--field)"),
        ([], "--benchmarks: no hub copy of leetcode"),  # the defaults: every benchmark, from the hub
        (["--benchmarks", "leetcode,aime24"], "--benchmarks: no hub copy of leetcode; pass --data-dir (a folder"),
        (["--data-dir", "/nonexistent/data"], "--data-dir: folder not found: /nonexistent/data"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, shared_data, capsys, args, message):
    train = str(shared_data / "aime24" / "test.jsonl")
    out = tmp_path / "clean.jsonl"
    assert main(["data", "decontaminate", train, "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_input_is_named(tmp_path, capsys):
    args = ["--out", str(tmp_path / "o.jsonl"), "--benchmarks", "math"]
    assert main(["data", "decontaminate", str(tmp_path / "gone.jsonl"), *args]) == 2
    assert f"input {tmp_path / 'gone.jsonl'}: file not found" in capsys.readouterr().err
