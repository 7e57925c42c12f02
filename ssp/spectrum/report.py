"""Readable output of the spectrum stage: the console table and OUT/spectrum_report.md."""

from __future__ import annotations

from pathlib import Path

from ssp.evaluation.report import test_table
from ssp.files import write_text
from ssp.tables import markdown_lines


def probe_table(probe: dict[str, dict[str, dict]], ks: list[int]) -> list[str]:
    """One row per checkpoint and subdomain, one column per pass@k."""
    rows = []
    for checkpoint, per_domain in probe.items():
        for domain, metrics in per_domain.items():
            if domain != "all":
                rows.append([checkpoint, domain] + [f"{metrics[f'pass@{k}']:.3f}" for k in ks])
    return markdown_lines(["checkpoint", "subdomain"] + [f"pass@{k}" for k in ks], rows)


def selection_table(selection: dict[str, dict], key: str) -> list[str]:
    rows = [[d, s["checkpoint"], f"{s['score']:.3f}", f"{s['weight']:.3f}"] for d, s in selection.items()]
    return markdown_lines(["subdomain", "selected checkpoint", key, "merge weight"], rows)


def print_probe_table(probe: dict[str, dict[str, dict]], ks: list[int]) -> None:
    print("\nPer-subdomain pass@k of every checkpoint (probing sets):")
    print("\n".join(probe_table(probe, ks)))


def merge_line(fusion, key: str, best_single: str | None, note: str | None) -> str:
    """How the spectrum model was made (`fusion.merge`, or explicit `fusion.weights`)."""
    if fusion.weights:
        line = "Merge: the recipe's `fusion.weights`, normalised."
    elif fusion.merge == "score":
        line = f"Merge: `score`, each specialist weighted by its {key}, normalised."
    elif fusion.merge == "none":
        line = f"Merge: `none`, no merge; `spectrum` is a copy of the best single checkpoint ({best_single})."
    else:
        line = "Merge: `uniform`, 1/N for each subdomain's specialist."
    return line if note is None else f"{line} Note: {note}."


def write_spectrum_report(
    path: Path,
    probe: dict,
    selection: dict,
    test: dict,
    recipe,
    cost: dict,
    merge_note: str | None = None,
    best_single: str | None = None,
) -> None:
    key = "pass@1" if recipe.fusion.metric == "pass@1" else f"pass@{recipe.fusion.k}"
    sampling = recipe.probe.sampling
    test_sampling = recipe.eval.sampling
    lines = [
        f"# Spectrum report: {Path(recipe.output_dir).name}",
        "",
        f"Probing: {sampling.n} samples per problem at temperature {sampling.temperature}, top_p {sampling.top_p}, "
        f"{sampling.max_new_tokens} new tokens. Selection metric: {key}.",
        "",
        "## pass@k per subdomain and checkpoint",
        "",
        *probe_table(probe, recipe.probe.ks),
        "",
        "## Selection",
        "",
        merge_line(recipe.fusion, key, best_single, merge_note),
        "",
        *selection_table(selection, key),
        "",
        "## Test split",
        "",
        f"{test_sampling.n} samples per problem at temperature {test_sampling.temperature}; greedy is one "
        "temperature-0 sample. `spectrum` is the merged model, `best_single` the checkpoint with the best mean "
        "selection metric over subdomains.",
        "",
        *test_table(test, recipe.eval.ks),
        "",
        "## Cost",
        "",
        f"{cost['wall_seconds']:.0f} s wall on {cost['device_count']} x {cost['device_type']}: "
        f"{cost['device_hours']:.4f} device-hours, ${cost['dollars']:.4f} at ${cost['price_per_device_hour']}/h; "
        f"{cost['tokens_trained']:,} tokens trained, {cost['tokens_generated']:,} generated.",
        "",
    ]
    write_text(path, "\n".join(lines))
    print("\nSelection:")
    print(merge_line(recipe.fusion, key, best_single, merge_note))
    print("\n".join(selection_table(selection, key)))
    print("\nTest split:")
    print("\n".join(test_table(test, recipe.eval.ks)))
    print(f"\nReport: {path}")
