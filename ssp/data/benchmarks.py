"""Evaluation benchmarks: one explicit table of specs, and a loader that turns each into scoreable rows.

A benchmark row is
`{"id", "problem", "prompt", "answer" (math) | "tests" + "prelude" (code), "solutions", "domain", "reward"}`:
`problem` is the statement as a person reads it (what n-gram decontamination compares), `prompt` the user turn sent
to the model (the problem in the benchmark's template), `answer` the normalised gold answer, `tests` the tests in a
form `ssp.rewards.code` runs, `solutions` the reference solutions where the data has them (code: whole programs),
`domain` the benchmark name and `reward` the name of the reward in `ssp.rewards.REWARDS` that scores the row.

`load_benchmark(name, data_dir=DIR)` reads `DIR/<spec.local_path>` (the layout of ../shared/data);
`data_dir=None` loads the spec's hub dataset through `datasets`. A missing file, an unknown name or a row without
a required field raises `DataError` with one line naming the benchmark, the file and the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import datasets

from ssp.config import DataSource
from ssp.data.records import DataError, read_records
from ssp.data.rows import checked_prelude, checked_tests, gold_answer, problem_text
from ssp.rewards.code import LEETCODE_PRELUDE, livecodebench_tests

# The report's prompt suffix for math (DESIGN.md, "Data hygiene and evaluation").
MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
MATH_TEMPLATE = "{problem}\n" + MATH_INSTRUCTION
CODE_INSTRUCTION = "Write the complete solution in Python, in one ```python code block."
STDIN_INSTRUCTION = (
    "Read the inputs from stdin, solve the problem and write the answer to stdout. "
    "Write the complete program in Python, in one ```python code block."
)

# rLLM's LeetCode problems wrap each statement in these sentences; as n-grams they would match every LeetCode-style
# training problem, so a row's `problem` (what decontamination compares) leaves them out.
RLLM_INSTRUCTIONS = (
    "Please solve the programming task below using a self-contained code snippet in a markdown code block.",
    "Please complete the following python code precisely:",
)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark comes from, how its records map onto rows, and how its rows are prompted and scored."""

    name: str
    kind: str  # math | code
    local_path: str  # relative to a data dir laid out like ../shared/data
    hub_id: str | None  # a `datasets` hub id; None when the benchmark has no hub copy `datasets` can load
    no_hub_reason: str = ""  # why hub_id is None, told to whoever runs it without a data dir
    hub_split: str = "test"
    hub_config: str | None = None
    # Row field -> candidate column names, first present wins (the local file and the hub copy may differ).
    problem_columns: tuple[str, ...] = ("problem",)
    answer_columns: tuple[str, ...] = ("answer",)
    id_columns: tuple[str, ...] = ("id",)
    solution_columns: tuple[str, ...] = ("solution",)
    date_columns: tuple[str, ...] = ("contest_date", "release_date", "date")
    # How the gold answer is written, for ssp.rewards.math_answers.normalize_gold: latex (the text), integer (AIME's
    # zero-padded strings), number (floats such as 27.0 -> "27"), gsm8k (the text after "####", without commas).
    answer_format: str = "latex"
    prompt_template: str = MATH_TEMPLATE  # `{problem}` is the problem; `{starter}` the code shown with it (code)
    starter_prompt_template: str = ""  # code rows that come with starter code use this template instead
    tests_format: str = ""  # code: humaneval | mbpp | leetcode | livecodebench
    id_range: tuple[int, int] | None = None  # inclusive range of numeric ids kept by default (MBPP's test split)
    preset: str = "math"  # the sampling preset of `ssp eval` (ssp.generation.presets.PRESETS)
    size: int = 0  # problems in the default selection (what `ssp plan` assumes before the data is on disk)

    @property
    def reward(self) -> str:
        return "math_verify" if self.kind == "math" else "code_tests"


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "aime24": BenchmarkSpec(
        "aime24",
        "math",
        "aime24/test.jsonl",
        "HuggingFaceH4/aime_2024",
        hub_split="train",
        answer_format="integer",
        size=30,
    ),
    "aime25": BenchmarkSpec("aime25", "math", "aime25/test.jsonl", "math-ai/aime25", answer_format="integer", size=30),
    "hmmt25": BenchmarkSpec(
        "hmmt25",
        "math",
        "hmmt_feb_2025/test.jsonl",
        "MathArena/hmmt_feb_2025",
        hub_split="train",
        id_columns=("id", "problem_idx"),
        size=30,
    ),
    "amc23": BenchmarkSpec(
        "amc23",
        "math",
        "amc23/test.jsonl",
        "math-ai/amc23",
        problem_columns=("problem", "question"),
        answer_format="number",
        size=40,
    ),
    "math500": BenchmarkSpec(
        "math500", "math", "math500/test.jsonl", "HuggingFaceH4/MATH-500", id_columns=("unique_id",), size=500
    ),
    "gsm8k": BenchmarkSpec(
        "gsm8k",
        "math",
        "gsm8k/test.jsonl",
        "openai/gsm8k",
        hub_config="main",
        problem_columns=("question",),
        solution_columns=("answer",),
        answer_format="gsm8k",
        size=1319,
    ),
    "humaneval": BenchmarkSpec(
        "humaneval",
        "code",
        "humaneval/HumanEval.jsonl",
        "openai/openai_humaneval",
        problem_columns=("prompt",),
        answer_columns=(),
        id_columns=("task_id",),
        solution_columns=("canonical_solution",),
        prompt_template="Complete the following Python function.\n\n```python\n{problem}```\n\n" + CODE_INSTRUCTION,
        tests_format="humaneval",
        preset="code",
        size=164,
    ),
    "mbpp": BenchmarkSpec(
        "mbpp",
        "code",
        "mbpp/mbpp.jsonl",
        "google-research-datasets/mbpp",
        hub_config="full",
        problem_columns=("text",),
        answer_columns=(),
        id_columns=("task_id",),
        solution_columns=("code",),
        prompt_template="{problem}\nYour code should pass these tests:\n\n```python\n{starter}\n```\n\n"
        + CODE_INSTRUCTION,
        tests_format="mbpp",
        id_range=(11, 510),
        preset="code",
        size=500,
    ),
    # rLLM's LeetCode test set; its problem text already asks for a markdown code block and shows the stub.
    "leetcode": BenchmarkSpec(
        "leetcode",
        "code",
        "rllm_code/leetcode_test.json",
        None,
        answer_columns=(),
        solution_columns=("solutions",),
        prompt_template="{problem}",
        tests_format="leetcode",
        preset="code",
        size=200,
    ),
    # LiveCodeBench-style; the local copy is DeepCoder's public-test subset (2024-08..2025-01), without dates.
    # Hub field names (question_content, question_id, public_test_cases, contest_date) are read too, so a JSON
    # array of the hub repository's test*.jsonl records works as the local file (docs/evaluation.md).
    "lcb": BenchmarkSpec(
        "lcb",
        "code",
        "livecodebench_subset/test.json",
        None,
        no_hub_reason="livecodebench/code_generation_lite is a dataset script, which datasets>=4 refuses to run",
        problem_columns=("problem", "question_content"),
        answer_columns=(),
        id_columns=("id", "question_id"),
        solution_columns=(),
        prompt_template="{problem}\n\n" + STDIN_INSTRUCTION,
        starter_prompt_template="{problem}\n\nComplete this starter code:\n\n```python\n{starter}\n```\n\n"
        + CODE_INSTRUCTION,
        tests_format="livecodebench",
        preset="code",
        size=279,
    ),
}

_DEFAULT = object()  # `id_range` not given: use the spec's
# A recipe's data source `path: benchmark:<name>` reads that benchmark (its prompts, gold answers or tests, reward).
BENCHMARK_PREFIX = "benchmark:"


def get_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    return BENCHMARKS[name]


def benchmark_source(name: str, data_dir: str | Path | None = None) -> str:
    """The file (under `data_dir`) or hub id a benchmark loads from."""
    spec = get_spec(name)
    if data_dir is not None:
        return str(Path(data_dir).expanduser() / spec.local_path)
    if spec.hub_id is None:
        reason = f" ({spec.no_hub_reason})" if spec.no_hub_reason else ""
        raise DataError(f"{name}: has no hub dataset{reason}; pass a data dir holding {spec.local_path}")
    return spec.hub_id


def load_benchmark(
    name: str,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    *,
    path: str | Path | None = None,
    since: str | date | None = None,
    until: str | date | None = None,
    id_range: tuple[int, int] | None | object = _DEFAULT,
) -> list[dict]:
    """Rows of one benchmark, in file order.

    `path` reads that file instead of `data_dir/<local_path>`; `since`/`until` keep problems released in that
    window (inclusive ISO dates; the data must have release dates); `id_range` overrides the spec's default id
    filter (None keeps every row); `limit` keeps the first `limit` problems after filtering.
    """
    spec = get_spec(name)
    source = str(path) if path is not None else benchmark_source(name, data_dir)
    if limit is not None and limit < 1:
        raise DataError(f"{name}: limit must be >= 1, got {limit}")
    is_local = path is not None or data_dir is not None
    if is_local and not Path(source).is_file():
        raise DataError(f"{name}: file not found: {source}")
    records = _read(spec, source, is_local)
    window = (_as_date(since, name, "since"), _as_date(until, name, "until"))
    keep_ids = spec.id_range if id_range is _DEFAULT else id_range
    rows, first_index = [], {}  # row id -> index of the record that gave it
    for index, record in enumerate(records):
        where = f"{name}: {source} row {index}"
        if not isinstance(record, dict):
            raise DataError(f"{where} is a {type(record).__name__}, expected an object")
        raw_id = _column(record, spec.id_columns, where, "id", required=False)
        if keep_ids is not None and not _id_in_range(raw_id, keep_ids, where):
            continue
        if window != (None, None) and not _released_in(record, spec, window, where):
            continue
        row = _row(spec, record, index, raw_id, where)
        if row["id"] in first_index:  # samples and results are keyed by id, so two rows would merge into one
            raise DataError(f"{name}: {source} rows {first_index[row['id']]} and {index} have the same id {raw_id!r}")
        first_index[row["id"]] = index
        rows.append(row)
        if limit is not None and len(rows) == limit:
            break
    if not rows:
        raise DataError(f"{name}: no rows left in {source} (check the id range, date window and limit)")
    return rows


def _read(spec: BenchmarkSpec, source: str, is_local: bool) -> list[dict]:
    if is_local:
        return read_records(DataSource(path=source), spec.name)
    try:
        return datasets.load_dataset(source, spec.hub_config, split=spec.hub_split).to_list()
    except Exception as exc:  # the hub raises many types; the user needs the id and the reason
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{spec.name}: could not load hub dataset {source!r}: {reason}") from None


def _column(record: dict, columns: tuple[str, ...], where: str, field: str, required: bool = True):
    for column in columns:
        if record.get(column) is not None:
            return record[column]
    if required:
        raise DataError(f"{where} has no field {' or '.join(map(repr, columns))} ({field})")
    return None


def _row(spec: BenchmarkSpec, record: dict, index: int, raw_id, where: str) -> dict:
    """One benchmark row; its fields are checked as `ssp.data.rows` checks a data source's."""
    problem = _column(record, spec.problem_columns, where, "problem")
    problem_text(problem, f"{where}: field {spec.problem_columns[0]!r} (problem)")
    row_id = f"{spec.name}-{index if raw_id is None else raw_id}"
    row = {"id": row_id, "problem": problem}
    if spec.kind == "math":
        solution = _column(record, spec.solution_columns, where, "solution", required=False)
        gold = _column(record, spec.answer_columns, where, "answer")
        row["answer"] = gold_answer(gold, spec.answer_format, f"{where}: field 'answer'")
        if row["answer"] is None:
            raise DataError(f"{where}: field 'answer' is empty")
        row["solutions"] = [solution] if isinstance(solution, str) else []
        row["prompt"] = spec.prompt_template.replace("{problem}", problem)
    else:
        tests, prelude, solution, starter = _code_fields(spec, record, problem, where)
        checked_tests(tests, f"{where}: field 'tests' is not usable")
        checked_prelude(prelude, f"{where}: field 'prelude'")
        template = spec.starter_prompt_template if starter and spec.starter_prompt_template else spec.prompt_template
        row.update(tests=tests, prelude=prelude, solutions=[solution] if solution else [])
        row["prompt"] = template.replace("{starter}", starter).replace("{problem}", problem)
        if spec.tests_format == "leetcode":  # the statement without rLLM's instructions, which every problem shares
            for instruction in RLLM_INSTRUCTIONS:
                row["problem"] = row["problem"].replace(instruction, "")
            row["problem"] = row["problem"].strip()
    row.update(domain=spec.name, reward=spec.reward)
    return row


def _code_fields(spec: BenchmarkSpec, record: dict, problem: str, where: str) -> tuple:
    """(tests, prelude, reference program or None, starter code shown in the prompt) of a code record."""
    if spec.tests_format == "humaneval":
        # The prompt as prelude gives the program the prompt's imports and helper functions.
        test = _column(record, ("test",), where, "tests")
        entry_point = _column(record, ("entry_point",), where, "tests")
        solution = _column(record, spec.solution_columns, where, "solution", required=False)
        program = problem + solution if solution else None
        return f"{test}\ncheck({entry_point})\n", problem, program, ""
    if spec.tests_format == "mbpp":
        test_list = _column(record, ("test_list",), where, "tests")
        if not isinstance(test_list, list) or not test_list:
            raise DataError(f"{where}: field 'test_list' (tests) must be a non-empty list")
        setup = record.get("test_setup_code") or ""
        asserts = "\n".join(test_list)
        solution = _column(record, spec.solution_columns, where, "solution", required=False)
        return f"{setup}\n{asserts}\n", "", solution, asserts
    if spec.tests_format == "leetcode":
        tests = _column(record, ("tests",), where, "tests")
        solution = _column(record, spec.solution_columns, where, "solution", required=False)
        return tests, LEETCODE_PRELUDE, solution, ""
    if spec.tests_format == "livecodebench":
        raw_tests = _column(record, ("tests", "public_test_cases"), where, "tests")
        starter = record.get("starter_code") or ""
        try:
            tests = livecodebench_tests(starter, raw_tests)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{where}: field 'tests' is not usable: {exc}") from None
        return tests, LEETCODE_PRELUDE, None, starter
    raise ValueError(f"{spec.name}: unknown tests_format {spec.tests_format!r}")


def _as_date(value, name: str, option: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise DataError(f"{name}: {option} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


def _released_in(record: dict, spec: BenchmarkSpec, window: tuple, where: str) -> bool:
    raw = _column(record, spec.date_columns, where, "release date", required=False)
    if raw is None:
        raise DataError(
            f"{where} has no release date (field {' or '.join(map(repr, spec.date_columns))}), so the "
            f"since/until window cannot be applied; drop the window or use data with release dates"
        )
    try:
        released = date.fromisoformat(str(raw)[:10])
    except ValueError:
        raise DataError(f"{where}: release date {raw!r} is not an ISO date") from None
    since, until = window
    return (since is None or released >= since) and (until is None or released <= until)


def _id_in_range(raw_id, id_range: tuple[int, int], where: str) -> bool:
    try:
        number = int(raw_id)
    except (TypeError, ValueError):
        raise DataError(f"{where}: id {raw_id!r} is not a number, so the id range {id_range} cannot apply") from None
    return id_range[0] <= number <= id_range[1]
