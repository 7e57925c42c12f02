from math import comb

import pytest

from ssp.evaluation import pass_at_k


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 2), (10, 3, 5), (64, 10, 8), (8, 1, 8), (20, 19, 1), (5, 2, 3)])
def test_matches_closed_form(n, c, k):
    expected = 1.0 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_pass_at_1_is_fraction_correct():
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)


def test_no_correct_samples_gives_zero():
    assert pass_at_k(16, 0, 1) == 0.0
    assert pass_at_k(16, 0, 16) == 0.0


def test_all_correct_gives_one():
    assert pass_at_k(16, 16, 1) == 1.0
    assert pass_at_k(16, 16, 16) == 1.0


def test_fewer_wrong_than_k_gives_one():
    # n - c < k: every draw of k samples contains a correct one
    assert pass_at_k(10, 8, 3) == 1.0
    assert pass_at_k(10, 8, 2) < 1.0


def test_large_n_does_not_overflow():
    value = pass_at_k(1000, 7, 64)
    assert value == pytest.approx(1.0 - comb(993, 64) / comb(1000, 64), rel=1e-9)


@pytest.mark.parametrize("n,c,k", [(4, 1, 5), (4, 1, 0), (4, 5, 1), (4, -1, 1), (0, 0, 1)])
def test_invalid_arguments_are_errors(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_k_greater_than_n_message():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 2, 8)
