"""Loading problems from the synthetic task, local JSONL/JSON/Parquet files or hub datasets into one row shape.

A row is `{"id", "problem", "solutions": [str, ...], "answer", "domain", "reward"}` plus `"tests"` for code.
Several rows with the same problem text are one problem with several solution paths. Malformed rows stop the
run before any work, with an error naming the source, the row and the field.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import datasets

from ssp.config import DataSource, RecipeError, TaskConfig
from ssp.data import synthetic
from ssp.models import looks_like_local_path
from ssp.rewards.extract import last_boxed


class DataError(RecipeError):
    """A data row or file the run cannot use."""


def read_records(source: DataSource, key: str) -> list[dict]:
    """Raw records of a local file (by extension) or a hub dataset."""
    path = Path(source.path).expanduser()
    if looks_like_local_path(source.path):
        suffix = path.suffix.lower()
        try:
            if suffix == ".jsonl":
                lines = path.read_text().splitlines()
                return [_parse_line(line, i, key, path) for i, line in enumerate(lines) if line.strip()]
            if suffix == ".json":
                data = json.loads(path.read_text())
                if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                    data = next(iter(data.values()))  # {"data": [...]} and similar wrappers
                if not isinstance(data, list):
                    raise DataError(f"{key}.path: {path} holds a {type(data).__name__}, expected a list of records")
                return data
            if suffix == ".parquet":
                return datasets.Dataset.from_parquet(str(path)).to_list()
        except json.JSONDecodeError as exc:
            raise DataError(f"{key}.path: {path} is not valid JSON: {exc}") from None
        raise DataError(f"{key}.path: {path}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")
    try:
        return datasets.load_dataset(source.path, source.name, split=source.split).to_list()
    except Exception as exc:  # the hub raises many types; the user needs the id and the reason
        raise DataError(f"{key}.path: could not load dataset {source.path!r}: {str(exc).splitlines()[0]}") from None


def _parse_line(line: str, index: int, key: str, path: Path) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{key}: {path} line {index + 1} is not valid JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise DataError(f"{key}: {path} line {index + 1} is a {type(record).__name__}, expected an object")
    return record


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
            rows.append(dict(row, prompt=template.replace("{problem}", row["problem"])))
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
