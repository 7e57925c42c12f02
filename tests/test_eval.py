import json
import math

import pytest

from ssp.cli import main
from ssp.config import EvalSettings
from ssp.data.benchmarks import BENCHMARKS, MATH_INSTRUCTION
from ssp.data.loading import DataError
from ssp.evaluation import report
from ssp.evaluation import run as eval_run
from ssp.evaluation.report import answer_classes, ks_up_to, majority_correct_math
from ssp.evaluation.run import run_eval
from ssp.generation.backends import TransformersBackend
from ssp.generation.parallel import chunk_seed
from ssp.generation.sampling import Generations
from ssp.rewards import scoring
from ssp.rewards.scoring import SandboxFailure
from ssp.sandbox import host as sandbox
from ssp.sandbox.pool import TaskFailure, WorkerStartError

MATH_PROBLEMS = [("What is 1+2?", "3"), ("What is 5+5?", "10"), ("What is 2*3?", "6")]
# n = 4 answers per problem: all right; one right and a wrong majority; three right, spelled three ways.
MATH_ANSWERS = {
    "What is 1+2?": ["\\boxed{3}"] * 4,
    "What is 5+5?": ["\\boxed{10}", "so \\boxed{7}", "\\boxed{7}", "no idea"],
    "What is 2*3?": ["\\boxed{5}", "\\boxed{\\frac{12}{2}}", "\\boxed{6}", "\\boxed{6.0}"],
}
ADD = "def add(a, b):\n    return a + b"
ADD_REFORMATTED = "def add(a,b):  # the sum\n    return (a+b)"
SUB = "def add(a, b):\n    return a - b"
MUL, MUL_SWAPPED, MUL_WRONG = (f"def mul(a, b):\n    return {body}" for body in ("a * b", "b * a", "a + b"))


def block(code: str) -> str:
    return f"```python\n{code}\n```"


CODE_ANSWERS = {  # keyed by the function name in the prompt
    "add": [block(SUB), block(ADD), block(ADD_REFORMATTED), "no code"],  # maj: ADD (2 votes, formatting ignored)
    "mul": [block(MUL_WRONG), block(MUL_WRONG), block(MUL), block(MUL_SWAPPED)],  # maj: the wrong program
}


def write_data(data_dir):
    (data_dir / "aime25").mkdir(parents=True)
    lines = [{"id": str(i), "problem": p, "answer": a} for i, (p, a) in enumerate(MATH_PROBLEMS)]
    (data_dir / "aime25" / "test.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (data_dir / "humaneval").mkdir()
    tasks = []
    for name, op in (("add", "+"), ("mul", "*")):
        test = (
            f"def check(candidate):\n    assert candidate(2, 5) == 2 {op} 5\n    assert candidate(3, 3) == 3 {op} 3\n"
        )
        prompt = f'def {name}(a, b):\n    """a {op} b"""\n'
        tasks.append({"task_id": f"T/{name}", "prompt": prompt, "entry_point": name, "test": test})
    (data_dir / "humaneval" / "HumanEval.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return data_dir


class FakeBackend:
    """Returns the scripted completions of each prompt and records what it was asked."""

    name = "fake"

    def __init__(self, fail_on_call: int | None = None):
        self.calls, self.seeds, self.fail_on_call = [], [], fail_on_call

    def generate(self, prompts, sampling, *, seed=None, **kwargs):
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt("interrupted")
        contents = [prompt[-1]["content"] for prompt in prompts]
        self.calls.append(contents)
        self.seeds.append(seed)
        texts = [self._answers(content)[: sampling.n] for content in contents]
        return Generations(texts, [[len(t) for t in group] for group in texts], [[False] * len(g) for g in texts])

    @staticmethod
    def _answers(content):
        for problem, answers in MATH_ANSWERS.items():
            if content.startswith(problem):
                return answers
        return CODE_ANSWERS["add" if "def add" in content else "mul"]


def use_backend(monkeypatch, backend):
    monkeypatch.setattr(eval_run, "get_backend", lambda *args, **kwargs: backend)


def test_ks_are_powers_of_two_up_to_n():
    assert ks_up_to(1) == [1]
    assert ks_up_to(8) == [1, 2, 4, 8]
    assert ks_up_to(12) == [1, 2, 4, 8, 12]


def test_fake_backend_gives_exact_pass_at_k_and_majority_vote(tmp_path, monkeypatch):
    use_backend(monkeypatch, FakeBackend())
    settings = EvalSettings(
        model="fake-org/fake-model",
        benchmarks=["aime25", "humaneval"],
        out=str(tmp_path / "out"),
        overrides={"n": 4},
        data_dir=str(write_data(tmp_path / "data")),
    )
    results = run_eval(settings)
    math_entry = results["benchmarks"]["aime25"]
    accuracies = [4 / 4, 1 / 4, 3 / 4]
    assert math_entry["problems"] == 3 and math_entry["samples_per_problem"] == 4
    assert math_entry["pass@1"] == pytest.approx(sum(accuracies) / 3)
    stderr = math.sqrt(sum((a - 2 / 3) ** 2 for a in accuracies) / 2) / math.sqrt(3)
    assert math_entry["pass@1_stderr"] == pytest.approx(stderr)
    # pass@2 per problem: 1, 1 - C(3,2)/C(4,2) = 1/2, 1 - C(1,2)/C(4,2) = 1.
    assert math_entry["pass@k"] == pytest.approx({"1": 2 / 3, "2": 2.5 / 3, "4": 1.0})
    # maj@4: right, wrong (7 beats 10), right (6, 12/2 and 6.0 are one class of three under math-verify).
    assert math_entry["maj@4"] == pytest.approx(2 / 3)
    assert math_entry["truncated"] == 0.0
    lengths = [len(t) for answers in MATH_ANSWERS.values() for t in answers]
    assert math_entry["mean_length"] == pytest.approx(sum(lengths) / 12)
    assert math_entry["sampling"]["temperature"] == 1.0 and math_entry["sampling"]["top_p"] == 0.95  # math preset

    code_entry = results["benchmarks"]["humaneval"]
    assert code_entry["pass@1"] == pytest.approx(0.5)
    assert code_entry["pass@k"] == pytest.approx({"1": 0.5, "2": 1 - 1 / 6, "4": 1.0})
    assert code_entry["maj@4"] == pytest.approx(0.5)  # add: the right program (2 votes); mul: the wrong one
    assert code_entry["sampling"]["temperature"] == 0.6  # code preset

    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text()) == results
    table = (out / "results.md").read_text()
    assert "| aime25 | 3 | 4 | 66.7 ± 22.0 | 100.0 | 66.7 |" in table
    assert (out / "pass_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = [json.loads(line) for line in (out / "samples" / "aime25.jsonl").read_text().splitlines()]
    assert len(samples) == 12
    assert samples[5] == {
        "id": "aime25-1",
        "sample": 1,
        "completion": "so \\boxed{7}",
        "answer": "7",
        "gold": "10",
        "correct": False,
        "status": "wrong",
        "length": 12,
        "truncated": False,
    }
    assert [sample["status"] for sample in samples[4:8]] == ["correct", "wrong", "wrong", "no_answer"]
    code_samples = [json.loads(line) for line in (out / "samples" / "humaneval.jsonl").read_text().splitlines()]
    assert [(s["correct"], s["status"]) for s in code_samples[:4]] == [
        (False, "wrong"),
        (True, "ok"),
        (True, "ok"),
        (False, "no_code"),
    ]


def test_an_interrupted_evaluation_resumes_without_regenerating_finished_problems(tmp_path, monkeypatch):
    data_dir = str(write_data(tmp_path / "data"))
    common = dict(model="fake-org/m", benchmarks=["aime25"], overrides={"n": 4, "batch_size": 1}, data_dir=data_dir)
    use_backend(monkeypatch, FakeBackend())
    reference = run_eval(EvalSettings(out=str(tmp_path / "clean"), **common))

    use_backend(monkeypatch, FakeBackend(fail_on_call=1))
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_eval(EvalSettings(out=str(out), **common))
    samples_file = out / "samples" / "aime25.jsonl"
    assert len(samples_file.read_text().splitlines()) == 4  # the first chunk (one problem) was written
    with samples_file.open("a") as file:  # and the second chunk was cut off while being written
        file.write(json.dumps({"id": "aime25-1", "sample": 0, "completion": "x", "correct": True}) + '\n{"id": "ai')
    assert not (out / "results.json").exists()

    resumed_backend = FakeBackend()
    use_backend(monkeypatch, resumed_backend)
    assert run_eval(EvalSettings(out=str(out), **common)) == reference
    assert resumed_backend.calls == [
        [MATH_PROBLEMS[1][0] + "\n" + MATH_INSTRUCTION],
        [MATH_PROBLEMS[2][0] + "\n" + MATH_INSTRUCTION],
    ]
    assert resumed_backend.seeds == [chunk_seed(0, "aime25", 1), chunk_seed(0, "aime25", 2)]
    assert samples_file.read_text() == (tmp_path / "clean" / "samples" / "aime25.jsonl").read_text()

    finished_backend = FakeBackend()  # a finished evaluation reruns without generating anything
    use_backend(monkeypatch, finished_backend)
    assert run_eval(EvalSettings(out=str(out), **common)) == reference
    assert finished_backend.calls == []


def test_resuming_with_other_settings_is_refused(tmp_path, monkeypatch):
    data_dir = str(write_data(tmp_path / "data"))
    use_backend(monkeypatch, FakeBackend())
    common = dict(model="fake-org/m", benchmarks=["aime25"], out=str(tmp_path / "out"), data_dir=data_dir)
    run_eval(EvalSettings(overrides={"n": 4}, **common))
    with pytest.raises(eval_run.RecipeError, match=r"holds aime25 samples made with sampling .*'n': 4.*'n': 2"):
        run_eval(EvalSettings(overrides={"n": 2}, **common))
    with pytest.raises(eval_run.RecipeError, match="holds an evaluation with seed 0, not 1"):
        run_eval(EvalSettings(overrides={"n": 4}, seed=1, **common))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(eval_run.RecipeError, match="holds files but no eval_config.json"):
        run_eval(EvalSettings(**{**common, "out": str(tmp_path / "other")}))


def test_resuming_with_another_limit_is_refused_and_keeps_every_sample(tmp_path, monkeypatch):
    data_dir = str(write_data(tmp_path / "data"))
    use_backend(monkeypatch, FakeBackend())
    common = dict(model="fake-org/m", benchmarks=["aime25"], out=str(tmp_path / "out"), data_dir=data_dir)
    run_eval(EvalSettings(overrides={"n": 4}, **common))
    samples_file = tmp_path / "out" / "samples" / "aime25.jsonl"
    written = samples_file.read_text()
    assert len(written.splitlines()) == 12
    config = json.loads((tmp_path / "out" / "eval_config.json").read_text())
    assert config["benchmarks"]["aime25"]["problem_ids"] == ["aime25-0", "aime25-1", "aime25-2"]
    with pytest.raises(eval_run.RecipeError) as error:
        run_eval(EvalSettings(overrides={"n": 4}, limit=2, **common))
    assert str(error.value) == (
        f"{tmp_path / 'out'} holds aime25 samples of 3 problems, not of the 2 loaded now (another --limit or data "
        f"file?); use the same settings or a new --out folder"
    )
    other_ids = [{"id": str(i + 5), "problem": p, "answer": a} for i, (p, a) in enumerate(MATH_PROBLEMS)]
    (tmp_path / "data" / "aime25" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in other_ids))
    with pytest.raises(eval_run.RecipeError, match="holds aime25 samples of other problems, not of the 3 loaded"):
        run_eval(EvalSettings(overrides={"n": 4}, **common))
    assert samples_file.read_text() == written
    assert "problem_ids" not in json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["aime25"]


def test_unfinished_chunks_are_dropped_but_samples_of_other_problems_are_kept(tmp_path):
    path = tmp_path / "samples.jsonl"
    records = [{"id": problem, "sample": j} for problem in ("a", "b", "other") for j in range(2)][:-1]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    finished = eval_run._keep_finished_chunks(path, [[{"id": "a"}], [{"id": "b"}, {"id": "c"}]], n=2)
    assert finished == {0}
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == [records[0], records[1], records[4]]  # b's chunk is unfinished (c has no samples)


def failing_sandbox_run(self, jobs, deadlines):
    return [TaskFailure("crashed", "zygote 3 died\nmore detail")] * len(jobs)


def test_a_sandbox_failure_stops_the_run_instead_of_scoring_zero(tmp_path, monkeypatch):
    data_dir = str(write_data(tmp_path / "data"))
    common = dict(model="fake-org/m", benchmarks=["aime25", "humaneval"], overrides={"n": 4, "batch_size": 1})
    use_backend(monkeypatch, FakeBackend())
    reference = run_eval(EvalSettings(out=str(tmp_path / "clean"), data_dir=data_dir, **common))
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(sandbox.Sandbox, "run", failing_sandbox_run)  # the sandbox is already up: it fails mid-run
        with pytest.raises(SandboxFailure) as error:
            run_eval(EvalSettings(out=str(out), data_dir=data_dir, **common))
    assert str(error.value) == (
        "the code sandbox failed while scoring humaneval-T/add (zygote 3 died); nothing of this chunk was written, "
        "so rerunning with the same --out resumes here (docs/sandbox.md)"
    )
    assert len((out / "samples" / "aime25.jsonl").read_text().splitlines()) == 12
    assert (out / "samples" / "humaneval.jsonl").read_text() == ""
    assert run_eval(EvalSettings(out=str(out), data_dir=data_dir, **common)) == reference


def test_a_sandbox_that_does_not_start_stops_the_run_before_the_model_loads(tmp_path, monkeypatch, capsys):
    def no_sandbox():
        raise WorkerStartError("bubblewrap is not installed (apt-get install bubblewrap)\nmore")

    def no_backend(*args, **kwargs):
        raise AssertionError("a backend was created")

    monkeypatch.setattr(scoring, "get_sandbox", no_sandbox)
    monkeypatch.setattr(eval_run, "get_backend", no_backend)
    data_dir = str(write_data(tmp_path / "data"))
    args = ["eval", "--model", "fake-org/m", "--benchmarks", "humaneval", "--data-dir", data_dir]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "ssp: error: the code sandbox does not start (bubblewrap is not installed (apt-get install bubblewrap)); "
        "code benchmarks need it (docs/sandbox.md)\n"
    )
    assert not (tmp_path / "out").exists()


def test_equivalent_answers_are_grouped_by_comparing_with_class_representatives_only(monkeypatch):
    compared = []

    def counting_check_answers(responses, golds):
        compared.extend(zip(responses, golds, strict=True))
        return check_answers(responses, golds)

    check_answers = report.check_answers
    monkeypatch.setattr(report, "check_answers", counting_check_answers)
    distinct = [["6", "\\frac{12}{2}", "6.0", "5", "7", "\\frac{10}{2}"], ["1"], ["2", "3"]]
    assert answer_classes(distinct) == [
        {"6": "6", "\\frac{12}{2}": "6", "6.0": "6", "5": "5", "7": "7", "\\frac{10}{2}": "5"},
        {"1": "1"},
        {"2": "2", "3": "3"},
    ]
    # Each answer meets the classes made before it: 0 + 1 + 1 + 1 + 2 + 3 comparisons, then 0, then 0 + 1;
    # all pairs would be 15 + 0 + 1.
    assert len(compared) == 9
    assert ("\\boxed{5}", "\\frac{10}{2}") in compared and ("\\boxed{\\frac{12}{2}}", "5") not in compared
    samples = [
        [{"answer": a, "correct": a in ("5", "\\frac{10}{2}")} for a in ["6", "5", "\\frac{10}{2}", None, "7"]],
        [{"answer": None, "correct": False}],
    ]
    assert majority_correct_math(samples) == [True, False]  # the class of 5 (two votes) beats 6 and 7


def test_a_malformed_row_stops_the_run_before_any_model_or_output(tmp_path, monkeypatch):
    data_dir = write_data(tmp_path / "data")
    with (data_dir / "aime25" / "test.jsonl").open("a") as file:
        file.write(json.dumps({"id": "9", "answer": "1"}) + "\n")

    def no_backend(*args, **kwargs):
        raise AssertionError("a backend was created")

    monkeypatch.setattr(eval_run, "get_backend", no_backend)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"^aime25: .*test.jsonl row 3 has no field 'problem' \(problem\)$"):
        run_eval(
            EvalSettings(model="fake-org/m", benchmarks=["humaneval", "aime25"], out=str(out), data_dir=str(data_dir))
        )
    assert not out.exists()


def test_cli_eval_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "missing"), "--benchmarks", "aime24"]) == 2
    assert capsys.readouterr().err == f"ssp: error: --model: model folder not found: {tmp_path / 'missing'}\n"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    args = ["eval", "--model", str(model), "--benchmarks", "math500", "--since", "2024-01-01"]
    assert main(args) == 2
    assert "add lcb to --benchmarks" in capsys.readouterr().err
    assert (
        main(["eval", "--model", str(model), "--benchmarks", "math500", "--n", "0", "--data-dir", str(tmp_path)]) == 2
    )
    assert capsys.readouterr().err == f"ssp: error: math500: file not found: {tmp_path}/math500/test.jsonl\n"


class InterruptingBackend(TransformersBackend):
    """The real transformers backend, interrupted before its second call."""

    def __init__(self, *args, fail_on_call=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.fail_on_call = 0, fail_on_call

    def generate(self, *args, **kwargs):
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt("interrupted")
        self.calls += 1
        return super().generate(*args, **kwargs)


def test_resumed_sampling_on_a_tiny_model_matches_an_uninterrupted_run(
    tiny_model_dir, shared_data, tmp_path, monkeypatch
):
    common = dict(
        model=str(tiny_model_dir),
        benchmarks=["gsm8k"],
        limit=3,
        data_dir=str(shared_data),
        overrides={"n": 3, "batch_size": 1, "max_new_tokens": 6},
    )
    monkeypatch.setattr(eval_run, "get_backend", lambda path, *a, **k: InterruptingBackend(path))
    reference = run_eval(EvalSettings(out=str(tmp_path / "clean"), **common))
    monkeypatch.setattr(eval_run, "get_backend", lambda path, *a, **k: InterruptingBackend(path, fail_on_call=2))
    with pytest.raises(KeyboardInterrupt):
        run_eval(EvalSettings(out=str(tmp_path / "resumed"), **common))
    monkeypatch.setattr(eval_run, "get_backend", lambda path, *a, **k: InterruptingBackend(path, fail_on_call=1))
    assert run_eval(EvalSettings(out=str(tmp_path / "resumed"), **common)) == reference  # one call: the last chunk
    clean, resumed = (tmp_path / d / "samples" / "gsm8k.jsonl" for d in ("clean", "resumed"))
    assert resumed.read_text() == clean.read_text()
    assert len({json.loads(line)["completion"] for line in clean.read_text().splitlines()}) > 1  # it really sampled


def test_eval_runs_end_to_end_on_every_benchmark_with_a_tiny_model(tiny_model_dir, shared_data, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_model_dir), "--benchmarks", ",".join(list(BENCHMARKS))]
    args += ["--limit", "2", "--n", "2", "--max-new-tokens", "4", "--data-dir", str(shared_data), "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["benchmarks"]) == list(BENCHMARKS)
    for name, entry in results["benchmarks"].items():
        assert entry["problems"] == 2 and entry["samples_per_problem"] == 2
        assert 0.0 <= entry["pass@1"] <= entry["pass@k"]["2"] <= 1.0
        assert entry["mean_length"] <= 4
        assert len((out / "samples" / f"{name}.jsonl").read_text().splitlines()) == 4
    table = (out / "results.md").read_text()
    assert all(f"| {name} | 2 | 2 |" in table for name in list(BENCHMARKS))
    assert (out / "pass_at_k.png").stat().st_size > 1000
