import pytest

from ssp.spectrum.selection import best_single_checkpoint, metric_key, select_checkpoints


def metrics(p1, p8):
    return {"pass@1": p1, "pass@8": p8}


PROBE = {
    "step-100": {"algebra": metrics(0.30, 0.50), "geometry": metrics(0.10, 0.70), "all": metrics(0.2, 0.6)},
    "step-200": {"algebra": metrics(0.40, 0.45), "geometry": metrics(0.20, 0.60), "all": metrics(0.3, 0.5)},
    "step-300": {"algebra": metrics(0.35, 0.55), "geometry": metrics(0.15, 0.40), "all": metrics(0.25, 0.5)},
}


def test_argmax_per_subdomain_by_pass_at_k():
    selection = select_checkpoints(PROBE, metric_key("pass@k", 8))
    assert selection["algebra"]["checkpoint"] == "step-300"
    assert selection["algebra"]["score"] == 0.55
    assert selection["geometry"]["checkpoint"] == "step-100"
    assert "all" not in selection


def test_pass_at_1_selects_differently():
    selection = select_checkpoints(PROBE, metric_key("pass@1", 8))
    assert {d: s["checkpoint"] for d, s in selection.items()} == {"algebra": "step-200", "geometry": "step-200"}


def test_ties_break_by_pass_at_1_then_later_step():
    probe = {
        "step-10": {"a": metrics(0.2, 0.5)},
        "step-20": {"a": metrics(0.3, 0.5)},
        "step-30": {"a": metrics(0.3, 0.5)},
        "step-5": {"a": metrics(0.9, 0.1)},
    }
    assert select_checkpoints(probe, "pass@8")["a"]["checkpoint"] == "step-30"


def test_single_checkpoint():
    probe = {"step-7": {"a": metrics(0.0, 0.0), "b": metrics(0.0, 0.0)}}
    selection = select_checkpoints(probe, "pass@8")
    assert {s["checkpoint"] for s in selection.values()} == {"step-7"}


def test_best_single_is_best_mean_over_subdomains():
    # means of pass@8: step-100 0.60, step-200 0.525, step-300 0.475
    assert best_single_checkpoint(PROBE, "pass@8") == "step-100"
    assert best_single_checkpoint(PROBE, "pass@1") == "step-200"


def test_empty_probe_is_an_error():
    with pytest.raises(ValueError, match="no probed checkpoints"):
        select_checkpoints({}, "pass@8")
