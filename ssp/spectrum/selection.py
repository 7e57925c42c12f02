"""Per-subdomain checkpoint selection: M*_i = argmax_t P_i(t)."""

from __future__ import annotations


def step_of(checkpoint: str) -> int:
    """`step-120` -> 120."""
    return int(checkpoint.rsplit("-", 1)[-1])


def metric_key(metric: str, k: int) -> str:
    """The probe result key the selection reads: `pass@1`, or `pass@K` for metric `pass@k`."""
    return "pass@1" if metric == "pass@1" else f"pass@{k}"


def select_checkpoints(probe: dict[str, dict[str, dict]], key: str) -> dict[str, dict]:
    """For each subdomain, the checkpoint with the highest `key`.

    `probe` maps checkpoint -> subdomain -> metrics. Ties are broken by pass@1, then by the later checkpoint
    (it has seen more data). Returns subdomain -> {"checkpoint", "score", "pass@1"}.
    """
    if not probe:
        raise ValueError("no probed checkpoints to select from")
    domains = sorted({d for per_domain in probe.values() for d in per_domain if d != "all"})
    selection = {}
    for domain in domains:
        candidates = [c for c in probe if domain in probe[c]]
        best = max(candidates, key=lambda c: (probe[c][domain][key], probe[c][domain]["pass@1"], step_of(c)))
        selection[domain] = {
            "checkpoint": best,
            "score": probe[best][domain][key],
            "pass@1": probe[best][domain]["pass@1"],
        }
    return selection


def best_single_checkpoint(probe: dict[str, dict[str, dict]], key: str) -> str:
    """The one checkpoint with the highest `key` averaged over subdomains (same tie-breaks as selection)."""

    def rank(checkpoint: str):
        domains = [d for d in probe[checkpoint] if d != "all"]
        mean = sum(probe[checkpoint][d][key] for d in domains) / len(domains)
        mean_pass1 = sum(probe[checkpoint][d]["pass@1"] for d in domains) / len(domains)
        return mean, mean_pass1, step_of(checkpoint)

    return max(probe, key=rank)
