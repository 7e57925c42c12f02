"""Benchmark metrics from scored samples, and their reports: results.md, a pass@k plot, and the test-split
table that both stages print.

Per benchmark: pass@1 as the mean over all samples with its standard error over problems, pass@k for
k = 1, 2, 4, ... up to n (the unbiased estimator), maj@n (majority vote over extracted answers), mean response
length and the share of truncated samples. docs/evaluation.md explains each number.
"""

from __future__ import annotations

import ast
import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

from ssp.evaluation.passk import pass_at_k
from ssp.rewards.extract import last_code_block
from ssp.rewards.math_answers import check_answers
from ssp.tables import markdown_lines


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks = [2**i for i in range(n.bit_length()) if 2**i <= n]
    return ks if ks[-1] == n else ks + [n]


def benchmark_metrics(kind: str, samples: list[list[dict]]) -> dict:
    """Metrics of one benchmark from its sample records, grouped per problem (every problem has the same n)."""
    n = len(samples[0])
    accuracies = [sum(s["correct"] for s in problem) / n for problem in samples]
    flat = [s for problem in samples for s in problem]
    majority = majority_correct_math(samples) if kind == "math" else majority_correct_code(samples)
    return {
        "problems": len(samples),
        "samples_per_problem": n,
        "pass@1": statistics.fmean(accuracies),
        "pass@1_stderr": statistics.stdev(accuracies) / math.sqrt(len(samples)) if len(samples) > 1 else 0.0,
        "pass@k": {
            str(k): statistics.fmean(pass_at_k(n, sum(s["correct"] for s in problem), k) for problem in samples)
            for k in ks_up_to(n)
        },
        f"maj@{n}": statistics.fmean(majority),
        "mean_length": statistics.fmean(s["length"] for s in flat),
        "truncated": statistics.fmean(s["truncated"] for s in flat),
        "tokens": sum(s["length"] for s in flat),
    }


def _vote(keys: list, correct: list[bool]) -> bool:
    """Correctness of the most frequent key (ties: the key seen first); False when no sample has a key."""
    counts: dict = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return False
    winner = max(counts, key=counts.get)  # max keeps the first of equal counts, in first-seen order
    return correct[keys.index(winner)]


def majority_correct_math(samples: list[list[dict]]) -> list[bool]:
    """maj@n for math: extracted answers are grouped into classes that math-verify finds equivalent (`6/2` votes
    with `3`), the largest class wins, and its most frequent answer string decides correctness."""
    distinct = [list(dict.fromkeys(s["answer"] for s in problem if s["answer"] is not None)) for problem in samples]
    classes = answer_classes(distinct)
    result = []
    for problem, class_of in zip(samples, classes, strict=True):
        answers = [s["answer"] for s in problem]
        keys = [None if a is None else class_of[a] for a in answers]
        counts = {c: keys.count(c) for c in dict.fromkeys(c for c in keys if c is not None)}
        if not counts:
            result.append(False)
            continue
        winner = max(counts, key=counts.get)  # ties: the class seen first
        members = [a if c == winner else None for a, c in zip(answers, keys, strict=True)]
        result.append(_vote(members, [s["correct"] for s in problem]))
    return result


def answer_classes(distinct: list[list[str]]) -> list[dict[str, str]]:
    """For each problem's distinct answers (in first-seen order), the representative of each answer's class.

    An answer joins the first class whose representative (its first member) math-verify finds equivalent, else it
    starts a class. d answers in k classes cost at most d * k comparisons instead of all d * (d - 1) / 2 pairs
    (64 samples that agree: 63, not 2,016). The i-th answers of all problems are compared in one batched call.
    """
    representatives: list[list[str]] = [[] for _ in distinct]
    classes: list[dict[str, str]] = [{} for _ in distinct]
    for position in range(max(map(len, distinct), default=0)):
        pairs = [
            (p, representative, answers[position])
            for p, answers in enumerate(distinct)
            if position < len(answers)
            for representative in representatives[p]
        ]
        # The earlier answer in the boxed (response) role, the later one as gold.
        verdicts = check_answers([f"\\boxed{{{r}}}" for _, r, _ in pairs], [a for _, _, a in pairs]) if pairs else []
        matched: dict[int, str] = {}
        for (p, representative, _), verdict in zip(pairs, verdicts, strict=True):
            if verdict is not None and verdict.correct and p not in matched:
                matched[p] = representative  # pairs list each problem's classes in creation order
        for p, answers in enumerate(distinct):
            if position < len(answers):
                if p not in matched:
                    representatives[p].append(answers[position])
                classes[p][answers[position]] = matched.get(p, answers[position])
    return classes


def program_key(completion: str) -> str | None:
    """A program as a vote: its syntax tree, so programs differing only in formatting and comments agree."""
    code = last_code_block(completion)
    if code is None:
        return None
    try:
        return ast.dump(ast.parse(code))
    except SyntaxError:
        return code.strip()


def majority_correct_code(samples: list[list[dict]]) -> list[bool]:
    """maj@n for code: the most frequent program (up to formatting) wins; samples without code do not vote."""
    return [
        _vote([program_key(s["completion"]) for s in problem], [s["correct"] for s in problem]) for problem in samples
    ]


def markdown_table(results: dict) -> str:
    """results.md: one row per benchmark, numbers in percent."""
    header = ["benchmark", "problems", "n", "pass@1 (± s.e.)", "pass@n", "maj@n", "mean length", "truncated"]
    rows = []
    for name, entry in results["benchmarks"].items():
        n = entry["samples_per_problem"]
        rows.append(
            [
                name,
                str(entry["problems"]),
                str(n),
                f"{100 * entry['pass@1']:.1f} ± {100 * entry['pass@1_stderr']:.1f}",
                f"{100 * entry['pass@k'][str(n)]:.1f}",
                f"{100 * entry[f'maj@{n}']:.1f}",
                f"{entry['mean_length']:.0f}",
                f"{100 * entry['truncated']:.1f}%",
            ]
        )
    lines = [f"Model: `{results['model']}`", "", *markdown_lines(header, rows)]
    lines += ["", "pass@1, pass@n and maj@n in percent; mean length in tokens."]
    return "\n".join(lines) + "\n"


def test_table(test: dict[str, dict], ks: list[int]) -> list[str]:
    """The test-split table of both stages: one row per model, its pass@k, greedy (when scored) and mean length."""
    has_greedy = any("greedy" in entry for entry in test.values())
    header = ["model"] + [f"pass@{k}" for k in ks] + (["greedy"] if has_greedy else []) + ["mean length"]
    rows = []
    for name, entry in test.items():
        label = f"{name} ({entry['checkpoint']})" if "checkpoint" in entry else name
        row = [label] + [f"{entry[f'pass@{k}']:.3f}" for k in ks]
        if has_greedy:
            row.append(f"{entry.get('greedy', float('nan')):.3f}")
        rows.append(row + [f"{entry['mean_length']:.1f}"])
    return markdown_lines(header, rows)


def plot_pass_at_k(results: dict, path: str | Path) -> None:
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for name, entry in results["benchmarks"].items():
        ks = [int(k) for k in entry["pass@k"]]
        axes.plot(ks, [100 * entry["pass@k"][str(k)] for k in ks], marker="o", label=name)
    axes.set_xscale("log", base=2)
    every_k = sorted({int(k) for entry in results["benchmarks"].values() for k in entry["pass@k"]})
    axes.set_xticks(every_k, [str(k) for k in every_k])
    axes.set_xlabel("k")
    axes.set_ylabel("pass@k (%)")
    axes.set_ylim(0, 100)
    axes.set_title(f"pass@k: {Path(str(results['model'])).name}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
