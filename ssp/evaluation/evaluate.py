"""Score sampled completions with the rows' correctness rewards and summarise them as pass@k per subdomain."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from ssp.config import DataConfig, EvalConfig, SamplingConfig
from ssp.data.loading import user_prompt
from ssp.evaluation.passk import pass_at_k
from ssp.generation.sampling import Generations, default_device, sample
from ssp.models import load_model, load_tokenizer
from ssp.rewards import get_reward


def score_rows(rows: list[dict], completions: list[list[str]]) -> list[list[bool]]:
    """Binary correctness of every completion, scored with each row's reward (one batched call per reward)."""
    correct: list[list[bool]] = [[] for _ in rows]
    by_reward: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_reward[row["reward"]].append(index)
    for name, indices in by_reward.items():
        # A column goes to the reward when any of its rows has it (None for the others), one entry per completion.
        present = [c for c in ("answer", "tests", "prelude", "domain") if any(c in rows[i] for i in indices)]
        flat_completions, columns = [], {column: [] for column in present}
        for index in indices:
            for completion in completions[index]:
                flat_completions.append(completion)
                for column in present:
                    columns[column].append(rows[index].get(column))
        scores = get_reward(name)(flat_completions, **columns)
        position = 0
        for index in indices:
            count = len(completions[index])
            # A reward of None means "not applicable"; only a full score counts as correct.
            correct[index] = [s is not None and s >= 1.0 for s in scores[position : position + count]]
            position += count
    return correct


def summarize(rows: list[dict], correct: list[list[bool]], ks: list[int], generations: Generations) -> dict:
    """pass@k per subdomain and over all problems (each problem weighs the same), plus length statistics."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        groups[row["domain"]].append(index)
    groups_with_all = {**dict(sorted(groups.items())), "all": list(range(len(rows)))}
    summary = {}
    for domain, indices in groups_with_all.items():
        entry: dict = {"problems": len(indices), "samples": len(correct[indices[0]])}
        for k in ks:
            values = [pass_at_k(len(correct[i]), sum(correct[i]), k) for i in indices]
            entry[f"pass@{k}"] = sum(values) / len(values)
        lengths = [length for i in indices for length in generations.lengths[i]]
        truncated = [flag for i in indices for flag in generations.truncated[i]]
        entry["mean_length"] = sum(lengths) / len(lengths)
        entry["truncated"] = sum(truncated) / len(truncated)
        summary[domain] = entry
    return summary


def evaluate_loaded(
    model,
    tokenizer,
    rows: list[dict],
    sampling: SamplingConfig,
    ks: list[int],
    prompt_template: str,
    system_prompt: str | None,
    seed: int,
    greedy: bool = False,
    desc: str = "evaluating",
) -> dict:
    """Sample, score and summarise one model on `rows`. Seeded, so the same model gives the same numbers."""
    torch.manual_seed(seed)
    prompts = [user_prompt(row["problem"], prompt_template, system_prompt) for row in rows]
    model.eval()
    generations = sample(model, tokenizer, prompts, sampling, greedy=greedy, desc=desc)
    correct = score_rows(rows, generations.texts)
    result = summarize(rows, correct, [1] if greedy else ks, generations)
    return {"domains": result, "tokens_generated": generations.tokens}


def evaluate_model(model_dir: str | Path, rows: list[dict], sampling: SamplingConfig, ks: list[int], **kwargs) -> dict:
    """Load a saved model and evaluate it (see `evaluate_loaded`)."""
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, device=default_device())
    result = evaluate_loaded(model, tokenizer, rows, sampling, ks, **kwargs)
    del model
    return result


def evaluate_models(models: dict[str, Path], rows: list[dict], evaluation: EvalConfig, data: DataConfig, seed: int):
    """Test-split numbers of each named model: overall pass@k, per-subdomain results, greedy accuracy when
    `evaluation.greedy`, and the tokens sampled. The one evaluation both stages report."""
    common = dict(prompt_template=data.prompt_template, system_prompt=data.system_prompt, seed=seed)
    results = {}
    for name, model_dir in models.items():
        sampled = evaluate_model(model_dir, rows, evaluation.sampling, evaluation.ks, desc=f"test {name}", **common)
        entry = {"model": str(model_dir), **sampled["domains"]["all"], "domains": sampled["domains"]}
        entry["tokens_generated"] = sampled["tokens_generated"]
        if evaluation.greedy:
            greedy = evaluate_model(model_dir, rows, evaluation.sampling, [1], greedy=True, desc=f"greedy {name}",
                                    **common)  # fmt: skip
            entry["greedy"] = greedy["domains"]["all"]["pass@1"]
            entry["tokens_generated"] += greedy["tokens_generated"]
        results[name] = entry
    return results
