import re

import pytest

from ssp.data.synthetic import DOMAINS, MAX_OPERAND, make_splits
from ssp.rewards.boxed import boxed_match
from ssp.rewards.extract import last_boxed


def solve(row) -> str:
    """An independent solver for each subdomain, from the problem text alone."""
    text = row["problem"]
    if row["domain"] == "arithmetic":
        a, b, c, d = map(int, re.match(r"Compute (\d+)\*\((\d+)\+(\d+)\)-(\d+)\.", text).groups())
        return str(a * (b + c) - d)
    if row["domain"] == "linear":
        a, b, c, d = map(int, re.match(r"Solve (\d+)x([+-]\d+)=(\d+)x([+-]\d+)\.", text).groups())
        return str((d - b) // (a - c))
    if row["domain"] == "modular":
        a, b, c, m = map(int, re.match(r"Divide (\d+)\*(\d+)\+(\d+) by (\d+)\.", text).groups())
        return f"{(a * b + c) // m},{(a * b + c) % m}"
    n, t0, t1, _ = map(int, re.match(r"Term (\d+) of (\d+), (\d+), (\d+), \.\.\.", text).groups())
    return str(t0 + (n - 1) * (t1 - t0))


@pytest.fixture(scope="module")
def splits():
    return make_splits(seed=3, train_size=400, probe_size=10, test_size=12)


def test_sizes_and_domains(splits):
    assert len(splits["train"]) == 400
    for split, per_domain in (("probe", 10), ("test", 12)):
        counts = {d: sum(r["domain"] == d for r in splits[split]) for d in DOMAINS}
        assert counts == {d: per_domain for d in DOMAINS}
    assert {r["domain"] for r in splits["train"]} == set(DOMAINS)


def test_splits_are_disjoint(splits):
    problems = {name: {r["problem"] for r in rows} for name, rows in splits.items()}
    assert not problems["train"] & problems["test"]
    assert not problems["train"] & problems["probe"]
    assert not problems["probe"] & problems["test"]
    assert len(problems["train"]) == len(splits["train"])  # no duplicates inside a split either


def test_every_path_is_correct_and_paths_differ(splits):
    for row in splits["train"] + splits["test"]:
        assert row["answer"] == solve(row), row
        assert len(row["solutions"]) >= 2
        assert len(set(row["solutions"])) == len(row["solutions"])
        assert boxed_match(row["solutions"], [row["answer"]] * len(row["solutions"])) == [1.0] * len(row["solutions"])
        # genuinely different: the intermediate steps differ, not only the wording
        steps = [s.split("\\boxed")[0] for s in row["solutions"]]
        assert steps[0] != steps[1]
        assert all(last_boxed(s) == row["answer"] for s in row["solutions"])


def test_deterministic_from_seed():
    assert make_splits(seed=7, train_size=40, probe_size=3, test_size=3) == make_splits(
        seed=7, train_size=40, probe_size=3, test_size=3
    )
    assert make_splits(seed=7, train_size=40)["test"] != make_splits(seed=8, train_size=40)["test"]


def test_growing_train_keeps_test_and_probe():
    small, large = make_splits(train_size=40), make_splits(train_size=400)
    assert small["test"] == large["test"]
    assert small["probe"] == large["probe"]


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_difficulty_bounds_operands(difficulty):
    rows = make_splits(difficulty=difficulty, train_size=200)["train"]
    numbers = [
        int(n) for r in rows if r["domain"] in ("arithmetic", "modular") for n in re.findall(r"\d+", r["problem"])
    ]
    assert max(numbers) <= MAX_OPERAND[difficulty]
    if difficulty > 1:
        assert max(numbers) > MAX_OPERAND[difficulty - 1]


def test_too_small_problem_space_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="subdomain sequence at this difficulty has too few distinct problems"):
        make_splits(domains=["sequence"], train_size=5000)


def test_unknown_domain_is_an_error():
    with pytest.raises(ValueError, match="unknown subdomain 'geometry'"):
        make_splits(domains=["geometry"])
