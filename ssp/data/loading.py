"""Loading problems from the synthetic task, local JSONL/JSON/Parquet files, hub datasets or the benchmarks of
`ssp eval` (`path: benchmark:<name>`) into one row shape.

A row is `{"id", "problem", "prompt", "solutions": [str, ...], "answer", "domain", "reward"}` plus `"tests"` (and
`"prelude"`) for code; `prompt` is the user turn. Files and hub datasets are read by `ssp.data.rows` (its rules:
records of one problem text are one problem with several solution paths, gold answers normalised, tests and
preludes checked). Malformed rows stop the run before any work, with an error naming the source, the row and the
field.
"""

from __future__ import annotations

from collections import defaultdict

from ssp.config import DataSource, TaskConfig
from ssp.data import synthetic
from ssp.data.benchmarks import BENCHMARK_PREFIX, load_benchmark
from ssp.data.records import DataError
from ssp.data.rows import RowReader, keep_rows


def load_source(source: DataSource, task: TaskConfig, key: str, for_training: bool) -> list[dict]:
    """The rows of one source (`key`: its recipe key, named in errors), at most `limit` problems per domain."""
    if source.path == "synthetic":
        splits = synthetic.make_splits(
            seed=task.seed,
            difficulty=task.difficulty,
            domains=task.domains,
            train_size=task.train_size,
            probe_size=task.probe_size,
            test_size=task.test_size,
        )
        rows = keep_rows([dict(row, reward=source.reward) for row in splits[source.split]], source)
    elif source.path.startswith(BENCHMARK_PREFIX):  # a benchmark of `ssp eval`: its rows, prompts and reward
        name = source.path[len(BENCHMARK_PREFIX) :]
        try:
            rows = load_benchmark(name, source.data_dir)
        except DataError as exc:
            raise DataError(f"{key}.path: {exc}") from None
        rows = keep_rows(rows, source)
    else:
        if for_training and not source.fields.solution:
            raise DataError(f"{key}.fields.solution: training data needs a solution column")
        # Training needs solutions and no gold; probing, evaluation and RL score the rows, so they need a gold.
        reader = RowReader(needs_solutions=for_training, needs_gold=not for_training)
        rows = reader.read_source(source, key)
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
