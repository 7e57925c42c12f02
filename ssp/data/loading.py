"""Loading problems from the synthetic task, local JSONL/JSON/Parquet files, hub datasets or the benchmarks of
`ssp eval` (`path: benchmark:<name>`) into one row shape.

A row is `{"id", "problem", "prompt", "solutions": [str, ...], "answer", "domain", "reward"}` plus `"tests"` (and
`"prelude"`) for code; `prompt` is the user turn.
Several rows with the same problem text are one problem with several solution paths. Malformed rows stop the
run before any work, with an error naming the source, the row and the field.
"""

from __future__ import annotations

from collections import defaultdict

from ssp.config import DataSource, TaskConfig
from ssp.data import synthetic
from ssp.data.benchmarks import BENCHMARK_PREFIX, load_benchmark
from ssp.data.records import DataError, read_records
from ssp.rewards.extract import last_boxed


def _field(record: dict, column: str, name: str, where: str, required: bool = True):
    if column not in record or record[column] is None:
        if required:
            raise DataError(f"{where} has no field {column!r} (fields.{name})")
        return None
    return record[column]


def normalize_records(records: list[dict], source: DataSource, key: str, for_training: bool) -> list[dict]:
    """Map raw records onto rows, grouping records of the same problem into one multi-path row."""
    fields = source.fields
    by_problem: dict[str, dict] = {}
    for index, record in enumerate(records):
        where = f"{key}: row {index}"

        problem = _field(record, fields.problem, "problem", where)
        if not isinstance(problem, str) or not problem.strip():
            raise DataError(f"{where}: field {fields.problem!r} must be a non-empty string")
        solutions: list[str] = []
        if fields.solution and (for_training or fields.solution in record):
            raw_solution = _field(record, fields.solution, "solution", where)
            solutions = [raw_solution] if isinstance(raw_solution, str) else raw_solution
            if not isinstance(solutions, list) or not all(isinstance(s, str) and s.strip() for s in solutions):
                raise DataError(f"{where}: field {fields.solution!r} must be a string or a list of strings")
        elif for_training:
            raise DataError(f"{key}.fields.solution: training data needs a solution column")
        tests = _field(record, fields.tests, "tests", where) if fields.tests else None
        prelude = _field(record, fields.prelude, "prelude", where) if fields.prelude else None
        if prelude is not None and not isinstance(prelude, str):
            raise DataError(f"{where}: field {fields.prelude!r} must be a string of code")
        answer = _field(record, fields.answer, "answer", where, required=False) if fields.answer else None
        if answer is None and solutions:
            answer = last_boxed(solutions[0])
        if answer is None and tests is None and not for_training:  # scoring needs one; SFT does not
            raise DataError(f"{where} has no answer: no field {fields.answer!r} and no \\boxed{{}} in a solution")
        domain = source.domain
        if fields.domain and fields.domain in record and record[fields.domain] is not None:
            domain = str(record[fields.domain])
        if source.domain_map:
            domain = source.domain_map.get(domain, "")
            if not domain:
                continue  # unmapped labels are not part of any subdomain
        if not domain:
            raise DataError(f"{where}: no domain (field {fields.domain!r}) and {key}.domain is not set")
        if source.domains and domain not in source.domains:
            continue
        row = by_problem.get(problem)
        if row is None:
            row = {"problem": problem, "solutions": [], "answer": None if answer is None else str(answer)}
            row.update({"domain": domain, "reward": source.reward})
            if tests is not None:
                row["tests"] = tests
            if prelude:
                row["prelude"] = prelude
            by_problem[problem] = row
        row["solutions"].extend(s for s in solutions if s not in row["solutions"])
    return list(by_problem.values())


def load_source(source: DataSource, task: TaskConfig, key: str, for_training: bool) -> list[dict]:
    if source.path == "synthetic":
        splits = synthetic.make_splits(
            seed=task.seed,
            difficulty=task.difficulty,
            domains=task.domains,
            train_size=task.train_size,
            probe_size=task.probe_size,
            test_size=task.test_size,
        )
        rows = [dict(row, reward=source.reward) for row in splits[source.split]]
        if source.domains:
            rows = [row for row in rows if row["domain"] in source.domains]
    elif source.path.startswith(BENCHMARK_PREFIX):  # a benchmark of `ssp eval`: its rows, prompts and reward
        name = source.path[len(BENCHMARK_PREFIX) :]
        try:
            rows = load_benchmark(name, source.data_dir)
        except DataError as exc:
            raise DataError(f"{key}.path: {exc}") from None
    else:
        rows = normalize_records(read_records(source, key), source, key, for_training)
    if source.limit is not None:  # at most `limit` problems per domain, in order
        kept: dict[str, int] = defaultdict(int)
        limited = []
        for row in rows:
            if kept[row["domain"]] < source.limit:
                kept[row["domain"]] += 1
                limited.append(row)
        rows = limited
    if not rows:
        raise DataError(f"{key}: no rows left (check {key}.domains, domain_map and limit)")
    return rows


def load_split(
    sources: list[DataSource],
    task: TaskConfig,
    key: str,
    prompt_template: str = "{problem}",
    for_training: bool = False,
) -> list[dict]:
    """All rows of one split (e.g. `data.train`), ids made unique across its sources. Each row's `prompt` is the
    user turn: its problem in its source's `prompt_template`, or in `prompt_template` (the recipe's
    `data.prompt_template`) when the source has none, so code rows can ask for code and math rows for a box."""
    rows = []
    for i, source in enumerate(sources):
        template = source.prompt_template or prompt_template
        for row in load_source(source, task, f"{key}.{i}", for_training):
            if source.prompt_template is not None or "prompt" not in row:  # benchmark rows come with their own
                row = dict(row, prompt=template.replace("{problem}", row["problem"]))
            rows.append(row)
    for i, row in enumerate(rows):
        row["id"] = f"{key.rsplit('.', 1)[-1]}-{i}"
    return rows


def rows_by_domain(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row["domain"]].append(row)
    return dict(grouped)


def chat_prompt(user_turn: str, system_prompt: str | None = None) -> list[dict]:
    """The conversation sent to the model: an optional system turn and the user turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user_turn}]


def sft_examples(rows: list[dict], paths_per_problem: int, system_prompt: str | None) -> list[dict]:
    """Multi-path SFT: every kept path of every problem is one prompt/completion example."""
    examples = []
    for row in rows:
        prompt = chat_prompt(row["prompt"], system_prompt)
        for solution in row["solutions"][:paths_per_problem]:
            examples.append({"prompt": prompt, "completion": [{"role": "assistant", "content": solution}]})
    return examples


def data_summary(train: list[dict], probe: list[dict], test: list[dict], sft_examples_count: int) -> dict:
    """Problem counts per split and subdomain, and how many SFT examples the paths made (OUT/data.json)."""

    def counts(rows: list[dict]) -> dict:
        return {"problems": len(rows), "by_domain": {d: len(r) for d, r in sorted(rows_by_domain(rows).items())}}

    train_summary = {**counts(train), "sft_examples": sft_examples_count}
    return {"train": train_summary, "probe": counts(probe), "test": counts(test)}
