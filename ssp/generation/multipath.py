"""`ssp data multipath RECIPE`: verified, mutually different solution paths per problem, as an SFT-ready JSONL.

1. read the sources' problems and candidate solutions (rows repeating a problem, or a list field), label each
   problem's subdomain, drop problems sharing an n-gram with a benchmark;
2. optionally sample more candidates per problem with a model (`model`, `sampling`);
3. reject candidates over the length limit, without a final answer (unparseable), whose answer the rewards'
   checker finds wrong (math-verify / boxed match / the code sandbox, with each problem's prelude), or that
   math-verify could not decide (timeout or error: unverifiable);
4. of each problem's correct candidates, reject near-duplicates (word n-gram Jaccard similarity at or above
   `duplicate_threshold` with an earlier one), then keep at most `max_paths`, chosen greedily so that each next
   path is the one least similar to those already chosen (max-min diversity; ties go to the earlier candidate);
5. write one row per problem with at least one path, `{"problem", "solutions", "answer", "domain"}` (+ `tests`
   and `prelude` for code), solutions in the order chosen, and the report next to it (`<output stem>.report.json`).
"""

from __future__ import annotations

import time
from collections import Counter

from tqdm.auto import tqdm

from ssp.config import MultipathConfig
from ssp.data.decontaminate import check_config, normalize_words
from ssp.data.loading import chat_prompt
from ssp.data.outputs import write_outputs
from ssp.data.problems import ProblemReader, decontaminate, kind_of, kinds_of
from ssp.generation.backends import get_backend
from ssp.models import load_tokenizer
from ssp.recipe_checks import check_multipath, report_path
from ssp.rewards.code import LEETCODE_PRELUDE
from ssp.rewards.scoring import SandboxFailure, Score, score, start_code_sandbox
from ssp.tables import aligned_table

REJECTIONS = ("too_long", "unparseable", "wrong", "unverifiable", "duplicate", "beyond_max_paths")
CHECK_CHUNK = 512  # candidates per call to a checker (the progress bar moves after each)


def check_multipath_config(config: MultipathConfig) -> None:
    """The recipe's checks (`ssp.recipe_checks.check_multipath`, run as it loads) and its decontamination
    benchmarks, which need the benchmark table."""
    check_multipath(config)
    check_config(config.decontaminate, kinds_of(config.sources))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def word_grams(words: list[str], n: int) -> set[str]:
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def similarity(a: list[str], b: list[str], n: int, grams: tuple[set[str], set[str]] | None = None) -> float:
    """How alike two paths are, from their normalised words: the Jaccard similarity of their word n-grams.

    When the shorter has fewer than n words, both are compared on grams of its length, and a short path whose
    words occur as one run inside the other, which adds fewer than n words to them, is a copy (1.0): `\\boxed{14}`
    and `So \\boxed{14}`. `grams` are the two paths' n-grams when already computed.
    """
    shorter, longer = sorted((a, b), key=len)
    size = min(n, len(shorter))
    if size == 0:
        return 0.0 if longer else 1.0
    if size == n:
        return jaccard(*grams) if grams else jaccard(word_grams(a, n), word_grams(b, n))
    if len(longer) - len(shorter) < n and f" {' '.join(shorter)} " in f" {' '.join(longer)} ":
        return 1.0
    return jaccard(word_grams(a, size), word_grams(b, size))


def select_paths(paths: list[str], max_paths: int, n: int, threshold: float) -> tuple[list[str], int, int]:
    """(the chosen paths, duplicates rejected, distinct paths beyond max_paths) for one problem's correct paths."""
    words = [normalize_words(path) for path in paths]
    grams = [word_grams(w, n) for w in words]
    cache: dict[tuple[int, int], float] = {}

    def alike(i: int, j: int) -> float:
        if (i, j) not in cache:
            cache[(i, j)] = similarity(words[i], words[j], n, (grams[i], grams[j]))
        return cache[(i, j)]

    distinct: list[int] = []
    for i in range(len(paths)):
        if all(alike(i, j) < threshold for j in distinct):
            distinct.append(i)
    chosen, remaining = distinct[:1], distinct[1:]
    while remaining and len(chosen) < max_paths:
        # The path farthest from its nearest chosen path; max() keeps the first (earliest) of equals.
        best = max(remaining, key=lambda i: min(1 - alike(i, j) for j in chosen))
        chosen.append(best)
        remaining.remove(best)
    return [paths[i] for i in chosen], len(paths) - len(distinct), len(remaining)


def verify(problems: list[dict]) -> list[list[str]]:
    """Each candidate's status: correct, unparseable, wrong or unverifiable (too_long where rejected before)."""
    statuses = [["too_long" if c is None else "" for c in p["candidates"]] for p in problems]
    items = [(p, c) for p, row in enumerate(statuses) for c, status in enumerate(row) if status != "too_long"]
    with tqdm(total=len(items), desc="checking candidates") as progress:
        for start in range(0, len(items), CHECK_CHUNK):
            chunk = items[start : start + CHECK_CHUNK]
            # One row per candidate: the scorer checks the chunk's candidates of each reward in one call.
            texts = [[problems[p]["candidates"][c]] for p, c in chunk]
            scores = check_candidates([problems[p] for p, _ in chunk], texts)
            for (p, c), (found,) in zip(chunk, scores, strict=True):
                statuses[p][c] = rejection(problems[p]["reward"], found)
            progress.update(len(chunk))
    return statuses


def check_candidates(problems: list[dict], candidates: list[list[str]]) -> list[list[Score]]:
    """The score of each problem's candidates with the problem's reward; a sandbox failure stops the build, since it
    would reject every code candidate as wrong."""
    try:
        return score(problems, candidates)
    except SandboxFailure as failure:
        raise failure.reworded(
            f"the code sandbox failed on {failure.failed} of {failure.scored} candidates ({failure.reason}); "
            "see docs/sandbox.md for what it needs"
        ) from None


def rejection(reward: str, found: Score) -> str:
    """A candidate's status from its score: correct, unparseable, too_long, unverifiable or wrong."""
    if found.correct:
        return "correct"
    if found.status in ("no_answer", "no_code", "syntax_error"):
        return "unparseable"
    if found.status == "too_long":
        return "too_long"
    # math-verify timing out or failing says nothing about the candidate (a program's timeout or error does).
    if reward == "math_verify" and found.status in ("timeout", "error"):
        return "unverifiable"
    return "wrong"


def sample_candidates(config: MultipathConfig, problems: list[dict]) -> int:
    """Add `sampling.n` samples of `model` to each problem's candidates; returns how many were sampled.

    A sample cut at the token budget is added as None: rejected as too long, like one over `max_tokens`.
    """
    backend = get_backend(
        config.model, config.backend, dtype=config.dtype, tensor_parallel_size=config.tensor_parallel_size
    )
    template = config.prompt_template
    prompts = [chat_prompt(template.replace("{problem}", p["problem"]), config.system_prompt) for p in problems]
    generations = backend.generate(prompts, config.sampling, seed=config.seed, desc="sampling candidates")
    for problem, texts, truncated in zip(problems, generations.texts, generations.truncated, strict=True):
        problem["candidates"].extend(None if cut else text for text, cut in zip(texts, truncated, strict=True))
    return sum(len(texts) for texts in generations.texts)


def run_multipath(config: MultipathConfig) -> dict:
    """Build the multi-path SFT set; returns the report (also written next to the output)."""
    started = time.perf_counter()
    check_multipath_config(config)
    reader = ProblemReader(default_prelude=LEETCODE_PRELUDE if config.leetcode_prelude else "")
    problems = reader.read(config.sources, "sources", with_candidates=True)
    counts = reader.counts
    read_candidates = sum(len(p["candidates"]) for p in problems)
    problems, contamination = decontaminate(problems, config.decontaminate)
    candidates_dropped = counts["candidates_set_aside"] + read_candidates - sum(len(p["candidates"]) for p in problems)
    if any(kind_of(problem) == "code" for problem in problems):
        start_code_sandbox()
    if config.model is not None and problems:
        counts["candidates_in"] += sample_candidates(config, problems)
    if config.max_tokens is not None:
        mark_too_long(problems, load_tokenizer(config.tokenizer or config.model), config.max_tokens)
    statuses = verify(problems)

    rejected = Counter({name: 0 for name in REJECTIONS})
    histogram = Counter({size: 0 for size in range(config.max_paths + 1)})
    by_subdomain: dict[str, dict] = {}
    rows = []
    for problem, problem_statuses in zip(problems, statuses, strict=True):
        rejected.update(status for status in problem_statuses if status != "correct")
        correct = [c for c, s in zip(problem["candidates"], problem_statuses, strict=True) if s == "correct"]
        paths, duplicates, surplus = select_paths(
            correct, config.max_paths, config.similarity_n, config.duplicate_threshold
        )
        rejected.update(duplicate=duplicates, beyond_max_paths=surplus)
        histogram[len(paths)] += 1
        if not paths:
            continue
        row = {"problem": problem["problem"], "solutions": paths, "answer": problem["answer"]}
        row["domain"] = problem["domain"]
        if kind_of(problem) == "code":
            row["tests"] = problem["tests"]
            row["prelude"] = problem["prelude"]  # "" when none: every code row has the column
        rows.append(row)
        domain = by_subdomain.setdefault(problem["domain"], {"problems": 0, "paths": 0})
        domain["problems"] += 1
        domain["paths"] += len(paths)

    kept_paths = sum(len(row["solutions"]) for row in rows)
    report = {
        "output": config.output,
        "problems": reader.problem_counts(contamination, len(rows), without_paths=histogram[0]),
        "candidates": {
            "in": counts["candidates_in"],
            "of_dropped_problems": candidates_dropped,
            **{name: rejected[name] for name in REJECTIONS},
            "kept": kept_paths,
        },
        "paths_per_problem": {str(size): histogram[size] for size in sorted(histogram)},
        "by_subdomain": dict(sorted(by_subdomain.items())),
        "unmapped_labels": reader.labels.report()["unmapped_labels"],
        "decontamination": contamination.report() if contamination else None,
        "settings": {
            "max_paths": config.max_paths,
            "similarity_n": config.similarity_n,
            "duplicate_threshold": config.duplicate_threshold,
            "max_tokens": config.max_tokens,
        },
    }
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_outputs(config.output, rows, report)
    print_report(report)
    return report


def mark_too_long(problems: list[dict], tokenizer, max_tokens: int) -> None:
    """Replace candidates longer than `max_tokens` tokens by None (verify() counts them as too_long).

    Candidates already None (samples cut at the token budget) stay None; only the texts are tokenized.
    """
    for problem in tqdm(problems, desc="measuring lengths", leave=False):
        texts = [text for text in problem["candidates"] if text is not None]
        if not texts:
            continue
        lengths = iter(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
        problem["candidates"] = [
            None if text is None or next(lengths) > max_tokens else text for text in problem["candidates"]
        ]


def print_report(report: dict) -> None:
    problems, candidates = report["problems"], report["candidates"]
    print(aligned_table(["problems", "count"], [[name, value] for name, value in problems.items()]))
    print(aligned_table(["candidates", "count"], [[name, value] for name, value in candidates.items()]))
    rows = [[domain, c["problems"], c["paths"]] for domain, c in report["by_subdomain"].items()]
    print(aligned_table(["subdomain", "problems", "paths"], rows))
    histogram = ", ".join(f"{size}: {count}" for size, count in report["paths_per_problem"].items())
    print(f"paths per problem: {histogram}")
    print(f"wrote {report['output']} (report: {report_path(report['output'])}) in {report['seconds']} s")
