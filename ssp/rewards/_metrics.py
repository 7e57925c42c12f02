"""Status shares a reward reports through TRL's `log_metric` keyword, so a silently failing reward shows up."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence


def log_status_shares(log_metric: Callable | None, reward: str, statuses: Sequence[str], known: Sequence[str]) -> None:
    """Log `rewards/<reward>/<status>` = share of the scored rows with that status (every known status, 0 included)."""
    if not callable(log_metric) or not statuses:
        return
    counts = Counter(statuses)
    for status in known:
        log_metric(f"rewards/{reward}/{status}", counts[status] / len(statuses))
