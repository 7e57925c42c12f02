"""Per-subdomain checkpoint selection: M*_i = argmax_t P_i(t)."""

from __future__ import annotations

from ssp.resume import step_of


def metric_key(metric: str, k: int) -> str:
    """The probe result key the selection reads: `pass@1`, or `pass@K` for metric `pass@k`."""
    return "pass@1" if metric == "pass@1" else f"pass@{k}"


def _tie_break(metrics: dict) -> float:
    """pass@1 breaks ties when it was probed; `probe.ks` need not hold 1 (e.g. [8] with fusion.k 8)."""
    return metrics.get("pass@1", 0.0)


def select_checkpoints(probe: dict[str, dict[str, dict]], key: str) -> dict[str, dict]:
    """For each subdomain, the checkpoint with the highest `key`.

    `probe` maps checkpoint -> subdomain -> metrics. Ties are broken by pass@1 (when probed), then by the later
    checkpoint (it has seen more data). Returns subdomain -> {"checkpoint", "score"}, plus "pass@1" when probed.
    """
    if not probe:
        raise ValueError("no probed checkpoints to select from")
    domains = sorted({d for per_domain in probe.values() for d in per_domain if d != "all"})
    selection = {}
    for domain in domains:
        candidates = [c for c in probe if domain in probe[c]]
        best = max(candidates, key=lambda c: (probe[c][domain][key], _tie_break(probe[c][domain]), step_of(c)))
        metrics = probe[best][domain]
        selection[domain] = {"checkpoint": best, "score": metrics[key]}
        if "pass@1" in metrics:
            selection[domain]["pass@1"] = metrics["pass@1"]
    return selection


def best_single_checkpoint(probe: dict[str, dict[str, dict]], key: str) -> str:
    """The one checkpoint with the highest `key` averaged over subdomains (same tie-breaks as selection)."""

    def rank(checkpoint: str):
        domains = [d for d in probe[checkpoint] if d != "all"]
        mean = sum(probe[checkpoint][d][key] for d in domains) / len(domains)
        mean_tie_break = sum(_tie_break(probe[checkpoint][d]) for d in domains) / len(domains)
        return mean, mean_tie_break, step_of(checkpoint)

    return max(probe, key=rank)
