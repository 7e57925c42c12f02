"""`ssp eval`: sample n completions per benchmark problem, score them, and write an auditable report.

Out folder:
- `eval_config.json`: the model, seed and each benchmark's source, sampling and problem ids (a resumed run must
  match them);
- `samples/<benchmark>.jsonl`: one line per sample (problem id, sample index, completion, extracted answer,
  gold, correct, scoring status, length in tokens, truncated);
- `results.json`, `results.md` (the table) and `pass_at_k.png` (pass@k curves), computed from the sample files.

Problems are generated in chunks of `sampling.batch_size`, each seeded from (seed, benchmark, chunk index) and
appended to the samples file when scored. A rerun with the same settings keeps every finished chunk, drops the
lines of an unfinished one and generates only what is missing, so it ends with the results of an uninterrupted run.
Code is scored in the sandbox; a sandbox failure stops the run (its chunk is not written) rather than scoring 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from ssp.config import EvalSettings, RecipeError
from ssp.data.benchmarks import benchmark_source, get_spec, load_benchmark
from ssp.evaluation.report import benchmark_metrics, markdown_table, plot_pass_at_k
from ssp.files import write_json, write_text
from ssp.generation.backends import get_backend
from ssp.generation.parallel import chunk_seed
from ssp.generation.presets import resolve_sampling
from ssp.recipe_checks import check_model_path
from ssp.rewards.math_answers import extract_answer
from ssp.rewards.scoring import SandboxFailure, Score, score, start_code_sandbox


def run_eval(settings: EvalSettings) -> dict:
    """Evaluate one model on the benchmarks; returns (and writes) the results."""
    if not settings.benchmarks:
        raise RecipeError("no benchmarks given (e.g. --benchmarks aime24,math500)")
    check_model_path(settings.model, "--model", require_config=True)
    specs = {name: get_spec(name) for name in settings.benchmarks}
    if (settings.since or settings.until) and "lcb" not in specs:
        raise RecipeError("--since/--until select LiveCodeBench problems by release date; add lcb to --benchmarks")
    # Everything that can be wrong with the data or the settings fails here, before any model is loaded.
    rows, samplings, plans = {}, {}, {}
    for name, spec in specs.items():
        window = {"since": settings.since, "until": settings.until} if name == "lcb" else {}
        rows[name] = load_benchmark(name, settings.data_dir, settings.limit, **window)
        samplings[name] = resolve_sampling(settings.preset or spec.preset, **settings.overrides)
        plans[name] = {"source": benchmark_source(name, settings.data_dir), **window}
        plans[name]["sampling"] = dataclasses.asdict(samplings[name])
    out = Path(settings.out)
    # The problem ids go into eval_config.json only: a resumed run must sample the same problems.
    problem_ids = {name: [row["id"] for row in rows[name]] for name in specs}
    config = {
        "model": settings.model,
        "seed": settings.seed,
        "benchmarks": {name: {**plans[name], "problem_ids": problem_ids[name]} for name in specs},
    }
    _check_resumable(out, config)
    if any(spec.kind == "code" for spec in specs.values()):
        _start_sandbox()  # a broken sandbox should cost neither a model load nor a chunk of sampling
    chunks, pending = {}, {}
    for name in specs:
        size = samplings[name].batch_size
        chunks[name] = [rows[name][i : i + size] for i in range(0, len(rows[name]), size)]
        samples = _read_samples(out / "samples" / f"{name}.jsonl")
        finished = _finished_chunks(samples, chunks[name], samplings[name].n)
        pending[name] = [c for c in range(len(chunks[name])) if c not in finished]
    backend = None
    if any(pending.values()):  # loaded before anything is written: a model that does not load leaves --out as it was
        backend = get_backend(
            settings.model, settings.backend, dtype=settings.dtype, tensor_parallel_size=settings.tensor_parallel_size
        )
    (out / "samples").mkdir(parents=True, exist_ok=True)
    write_json(out / "eval_config.json", _merged_config(out, config))
    for name in specs:
        _keep_finished_chunks(out / "samples" / f"{name}.jsonl", chunks[name], samplings[name].n)
    for name, spec in specs.items():
        sampling = samplings[name]
        path = out / "samples" / f"{name}.jsonl"
        desc = f"{name}: chunks of {sampling.batch_size} problems"
        for c in tqdm(pending[name], desc=desc, disable=not pending[name]):
            chunk = chunks[name][c]
            prompts = [[{"role": "user", "content": row["prompt"]}] for row in chunk]
            generations = backend.generate(prompts, sampling, seed=chunk_seed(settings.seed, name, c), desc=name)
            scores = _score_chunk(chunk, generations.texts)
            with path.open("a") as file:
                for i, row in enumerate(chunk):
                    for j, text in enumerate(generations.texts[i]):
                        record = {"id": row["id"], "sample": j, "completion": text}
                        if spec.kind == "math":
                            record.update(answer=extract_answer(text), gold=row["answer"])
                        sample = scores[i][j]
                        record.update(correct=sample.correct, status=sample.status, length=generations.lengths[i][j])
                        record["truncated"] = generations.truncated[i][j]
                        file.write(json.dumps(record) + "\n")
                file.flush()
                os.fsync(file.fileno())

    results = {"model": settings.model, "seed": settings.seed, "benchmarks": {}}
    for name, spec in specs.items():
        samples = _read_samples(out / "samples" / f"{name}.jsonl")
        metrics = benchmark_metrics(spec.kind, [samples[row["id"]] for row in rows[name]])
        results["benchmarks"][name] = {**metrics, **plans[name]}  # plus where the problems came from, and how sampled
    write_json(out / "results.json", results)
    write_text(out / "results.md", markdown_table(results))
    plot_pass_at_k(results, out / "pass_at_k.png")
    return results


def _score_chunk(rows: list[dict], texts: list[list[str]]) -> list[list[Score]]:
    """The score of every sample of `rows` (`ssp.rewards.scoring`); a sandbox failure stops the run, in words that
    say how to resume."""
    try:
        return score(rows, texts)
    except SandboxFailure as failure:
        raise failure.reworded(
            f"the code sandbox failed while scoring {failure.row['id']} ({failure.reason}); nothing of this chunk was "
            f"written, so rerunning with the same --out resumes here (docs/sandbox.md)"
        ) from None


def _start_sandbox() -> None:
    try:
        start_code_sandbox()
    except SandboxFailure as failure:
        raise failure.reworded(
            f"the code sandbox does not start ({failure.reason}); code benchmarks need it (docs/sandbox.md)"
        ) from None


def _check_resumable(out: Path, config: dict) -> None:
    """The out folder must be new, empty, or an evaluation of the same model with the same seed and settings."""
    if not out.exists() or not any(out.iterdir()):
        return
    previous_path = out / "eval_config.json"
    if not previous_path.is_file():
        raise RecipeError(f"{out} holds files but no eval_config.json; use a new or empty --out folder")
    samples = {path.stem for path in (out / "samples").glob("*.jsonl") if path.stat().st_size}
    if not samples:
        return  # nothing generated yet: the settings may change freely
    previous = json.loads(previous_path.read_text())
    for key in ("model", "seed"):
        if previous[key] != config[key]:
            raise RecipeError(f"{out} holds an evaluation with {key} {previous[key]!r}, not {config[key]!r}")
    for name, plan in config["benchmarks"].items():
        old = previous["benchmarks"].get(name)
        if old is None or name not in samples:
            continue
        for key in sorted((set(old) | set(plan)) - {"problem_ids"}):
            if old.get(key) != plan.get(key):
                raise RecipeError(
                    f"{out} holds {name} samples made with {key} {old.get(key)!r}, not {plan.get(key)!r}; "
                    f"use a new --out folder"
                )
        old_ids, ids = old.get("problem_ids"), plan["problem_ids"]
        if old_ids != ids:
            what = "other problems" if old_ids is None or len(old_ids) == len(ids) else f"{len(old_ids)} problems"
            raise RecipeError(
                f"{out} holds {name} samples of {what}, not of the {len(ids)} loaded now (another --limit or "
                f"data file?); use the same settings or a new --out folder"
            )


def _merged_config(out: Path, config: dict) -> dict:
    path = out / "eval_config.json"
    if not path.is_file():
        return config
    previous = json.loads(path.read_text())
    return {**config, "benchmarks": {**previous["benchmarks"], **config["benchmarks"]}}


def _read_samples(path: Path) -> dict[str, list[dict]]:
    """Sample records per problem id, by sample index; a torn last line (an interrupted write) is skipped."""
    by_id: dict[str, dict[int, dict]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            by_id.setdefault(record["id"], {})[record["sample"]] = record
    return {problem: [samples[j] for j in sorted(samples)] for problem, samples in by_id.items()}


def _finished_chunks(samples: dict[str, list[dict]], chunks: list[list[dict]], n: int) -> set[int]:
    """Indices of chunks whose every problem has n samples in `samples` (per problem id, `_read_samples`)."""
    return {c for c, chunk in enumerate(chunks) if all(len(samples.get(row["id"], [])) == n for row in chunk)}


def _keep_finished_chunks(path: Path, chunks: list[list[dict]], n: int) -> set[int]:
    """Indices of chunks whose every problem has n samples on file. The file is rewritten without the samples of
    unfinished chunks (they are generated again); samples of problems not in `chunks` are kept as they are."""
    samples = _read_samples(path)
    finished = _finished_chunks(samples, chunks, n)
    kept = [record for c in sorted(finished) for row in chunks[c] for record in samples[row["id"]]]
    loaded = {row["id"] for chunk in chunks for row in chunk}
    kept += [record for problem, records in samples.items() if problem not in loaded for record in records]
    write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
    return finished
