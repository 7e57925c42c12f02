import math

import pytest
import torch

from ssp.signal.mgpo import max_entropy_deviation, mgpo_weight
from ssp.signal.trainer import group_accuracy


def closed_form(p: float, lam: float) -> float:
    """exp(-lam * (ln 2 - H(p))), H the entropy in nats: the DESIGN.md equivalent form."""
    entropy = -sum(x * math.log(x) for x in (p, 1 - p) if x > 0)
    return math.exp(-lam * (math.log(2) - entropy))


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_weight_matches_closed_form_for_floats_and_tensors(p, lam):
    expected = closed_form(p, lam)
    assert mgpo_weight(p, lam) == pytest.approx(expected, rel=1e-12)
    assert mgpo_weight(torch.tensor([p], dtype=torch.float64), lam).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("lam", [0.0, 1.0, 3.0])
def test_landmarks(lam):
    assert mgpo_weight(0.5, lam) == 1.0
    assert mgpo_weight(0.0, lam) == pytest.approx(2.0**-lam)
    assert mgpo_weight(1.0, lam) == pytest.approx(2.0**-lam)
    assert mgpo_weight(0.25, lam) == pytest.approx(mgpo_weight(0.75, lam))  # symmetric about 0.5


def test_specific_values():
    # D_ME(0.25) = 0.25 ln 0.5 + 0.75 ln 1.5
    d = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert max_entropy_deviation(0.25) == pytest.approx(d)
    assert mgpo_weight(0.25, 2.0) == pytest.approx(math.exp(-2.0 * d))
    assert max_entropy_deviation(0.0) == pytest.approx(math.log(2))  # 0 log 0 = 0, not NaN


def test_lambda_zero_gives_exactly_one():
    p = torch.linspace(0, 1, 17)
    assert torch.equal(mgpo_weight(p, 0.0), torch.ones(17))


def test_tensor_shape_and_no_nan_at_the_ends():
    p = torch.tensor([[0.0, 1.0], [0.5, 0.125]])
    w = mgpo_weight(p, 1.5)
    assert w.shape == (2, 2) and not torch.isnan(w).any()


@pytest.mark.parametrize(
    "p,lam,message", [(1.5, 1.0, "in \\[0, 1\\]"), (-0.1, 1.0, "in \\[0, 1\\]"), (0.5, -1.0, "lambda must be >= 0")]
)
def test_invalid_arguments(p, lam, message):
    with pytest.raises(ValueError, match=message):
        mgpo_weight(p, lam)


def test_group_accuracy_counts_only_full_rewards():
    correctness = torch.tensor([1.0, 0.0, 1.0, 0.5, float("nan"), 0.0, 0.0, 0.0])
    assert group_accuracy(correctness, 4).tolist() == [0.5, 0.0]
