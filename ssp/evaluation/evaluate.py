"""Sample, score and summarise a model on rows: pass@k per subdomain. The one evaluation that probing and both
stages' test evaluations run, spread over the launch's processes (`ssp.generation.parallel`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from ssp.config import EvalConfig, SamplingConfig
from ssp.data.loading import chat_prompt
from ssp.evaluation.passk import pass_at_k
from ssp.generation.backends import get_backend
from ssp.generation.parallel import chunk_count, chunk_seed, spread, world
from ssp.generation.sampling import Generations
from ssp.rewards.scoring import score
from ssp.runs import free_device_memory


def score_rows(rows: list[dict], completions: list[list[str]]) -> list[list[bool]]:
    """Binary correctness of every completion, scored with each row's reward (`ssp.rewards.scoring.score`).

    A code sandbox failure scores wrong here, as it always has in probing and the stages' evaluations."""
    scores = score(rows, completions, raise_on_sandbox_error=False)
    return [[s.correct for s in row_scores] for row_scores in scores]


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


def local_device() -> torch.device:
    """This process's own device: its GPU in a launch (`LOCAL_RANK`), the first GPU alone, or the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def evaluate_model(
    model_dir: str | Path,
    rows: list[dict],
    sampling: SamplingConfig,
    ks: list[int],
    *,
    seed: int,
    name: str,
    system_prompt: str | None = None,
    greedy: bool = False,
    backend: str = "auto",
    desc: str = "evaluating",
    progress: bool = True,
) -> dict:
    """Sample `sampling.n` completions of every row's prompt (one if `greedy`), score them and summarise.

    Every process of a launch calls this with the same rows; each samples and scores its share of the chunks of
    `sampling.batch_size` rows with its own copy of the model, and every process gets the whole result. Chunk c is
    seeded by `chunk_seed(seed, name, c)`: the same model, rows and seed give the same numbers however many
    processes share the work. Returns `{"backend": the backend's name, "domains": per-subdomain metrics,
    "per_problem": correct samples per row id, "tokens_generated"}`.
    """
    _, processes = world()
    engine = get_backend(model_dir, backend, device=local_device() if processes > 1 else None,
                         data_parallel=processes > 1)  # fmt: skip
    prompts = [chat_prompt(row["prompt"], system_prompt) for row in rows]
    size = sampling.batch_size

    def sample_and_score(chunk: int):
        span = slice(chunk * size, (chunk + 1) * size)
        generations = engine.generate(
            prompts[span], sampling, seed=chunk_seed(seed, name, chunk), greedy=greedy, progress=False
        )
        return score_rows(rows[span], generations.texts), generations.lengths, generations.truncated

    results = spread(chunk_count(len(rows), size), sample_and_score, desc=desc, progress=progress)
    engine.close()  # frees the model before the next one loads
    free_device_memory()
    correct = [flags for result in results for flags in result[0]]
    generations = Generations(
        lengths=[lengths for result in results for lengths in result[1]],
        truncated=[flags for result in results for flags in result[2]],
    )
    return {
        "backend": engine.name,
        "domains": summarize(rows, correct, [1] if greedy else ks, generations),
        "per_problem": {row["id"]: sum(flags) for row, flags in zip(rows, correct, strict=True)},
        "tokens_generated": generations.tokens,
    }


def evaluate_models(
    models: dict[str, Path], rows: list[dict], evaluation: EvalConfig, system_prompt: str | None, seed: int
) -> dict:
    """Test-split numbers of each named model: overall pass@k, per-subdomain results, greedy accuracy when
    `evaluation.greedy`, correct samples per problem, and the tokens sampled. The one evaluation both stages
    report; every process of a launch takes part (`evaluate_model`)."""
    results = {}
    for label, model_dir in models.items():
        common = {"seed": seed, "system_prompt": system_prompt, "backend": evaluation.backend}
        sampled = evaluate_model(model_dir, rows, evaluation.sampling, evaluation.ks, name="test",
                                 desc=f"test {label}", **common)  # fmt: skip
        entry = {"model": str(model_dir), "backend": sampled["backend"], **sampled["domains"]["all"]}
        entry["domains"] = sampled["domains"]
        entry["per_problem"] = sampled["per_problem"]
        entry["tokens_generated"] = sampled["tokens_generated"]
        if evaluation.greedy:
            greedy = evaluate_model(model_dir, rows, evaluation.sampling, [1], name="greedy", greedy=True,
                                    desc=f"greedy {label}", **common)  # fmt: skip
            entry["greedy"] = greedy["domains"]["all"]["pass@1"]
            entry["tokens_generated"] += greedy["tokens_generated"]
        results[label] = entry
    return results
