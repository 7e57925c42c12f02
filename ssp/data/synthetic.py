"""The embedded synthetic reasoning task: four subdomains, two genuinely different solution paths per problem.

Every problem is generated from a seed, so the task is the same on every machine. Each subdomain has its own
disjoint train / probe / test problems (no problem text appears in two splits). `difficulty` widens the
operand ranges: 1 keeps every operand a single digit, which a ~1M-parameter model can learn in minutes on a CPU.

Subdomains and their two paths:
- arithmetic `a*(b+c)-d` (b + c within the operand range): add inside the brackets first, or distribute.
- linear `a*x+b=c*x+d`: collect x on the left, or on the right.
- modular, `Divide a*b+c by m.`, answered `quotient,remainder`: divide once at the end, or reduce the product
  first and then again, adding the quotients.
- sequence, n-th term of an increasing arithmetic progression: the closed formula, or listing the terms.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Largest operand per difficulty level.
MAX_OPERAND = {1: 9, 2: 19, 3: 49}

DOMAINS = ("arithmetic", "linear", "modular", "sequence")


def _signed(value: int) -> str:
    """`+ 3` / `- 3` for writing a term after another."""
    return f"+{value}" if value >= 0 else f"-{-value}"


def _p(value: int) -> str:
    """A number written after an operator: negatives in brackets, so `2-(-4)` never reads as `2--4`."""
    return str(value) if value >= 0 else f"({value})"


def _div_line(total: int, m: int) -> tuple[str, int]:
    quotient, remainder = divmod(total, m)
    return f"{total}={quotient}*{m}+{remainder}.", remainder


def arithmetic(rng: random.Random, top: int) -> dict:
    a, d = rng.randint(1, top), rng.randint(1, top)
    b = rng.randint(1, top - 1)
    c = rng.randint(1, top - b)  # b + c <= top: the products stay within the top x top table
    inner, total = b + c, a * (b + c)
    answer = total - d
    paths = [
        f"{b}+{c}={inner}. {a}*{inner}={total}. {total}-{d}={answer}. \\boxed{{{answer}}}",
        f"{a}*{b}={a * b}. {a}*{c}={a * c}. {a * b}+{a * c}={total}. {total}-{d}={answer}. \\boxed{{{answer}}}",
    ]
    return {"problem": f"Compute {a}*({b}+{c})-{d}.", "solutions": paths, "answer": str(answer)}


def linear(rng: random.Random, top: int) -> dict:
    a, c = rng.sample(range(1, top + 1), 2)
    x = rng.randint(-top, top)
    b = rng.randint(0, top)
    d = a * x + b - c * x
    problem = f"Solve {a}x{_signed(b)}={c}x{_signed(d)}."
    left_coef, left_const = a - c, d - b
    right_const, right_coef = b - d, c - a
    paths = [
        f"{a}x-{c}x={d}-{b}. {left_coef}x={left_const}. x={left_const}/{_p(left_coef)}={x}. \\boxed{{{x}}}",
        f"{b}-{_p(d)}={c}x-{a}x. {right_const}={right_coef}x. x={right_const}/{_p(right_coef)}={x}. \\boxed{{{x}}}",
    ]
    return {"problem": problem, "solutions": paths, "answer": str(x)}


def modular(rng: random.Random, top: int) -> dict:
    a, b, c = (rng.randint(1, top) for _ in range(3))
    m = rng.randint(2, top)
    product = a * b
    once, remainder = _div_line(product + c, m)
    quotient = (product + c) // m
    first, reduced = _div_line(product, m)
    second, check = _div_line(reduced + c, m)
    assert check == remainder
    q1, q2 = product // m, (reduced + c) // m
    answer = f"{quotient},{remainder}"
    paths = [
        f"{a}*{b}={product}. {product}+{c}={product + c}. {once} \\boxed{{{answer}}}",
        f"{a}*{b}={product}. {first} {reduced}+{c}={reduced + c}. {second} {q1}+{q2}={quotient}. \\boxed{{{answer}}}",
    ]
    # Asking for quotient and remainder, not the remainder alone: a remainder below m is too easy to guess, and
    # lucky guesses are reward noise in RL.
    problem = f"Divide {a}*{b}+{c} by {m}."  # the answer is "quotient,remainder"
    return {"problem": problem, "solutions": paths, "answer": answer}


def sequence(rng: random.Random, top: int) -> dict:
    first = rng.randint(0, top)
    step = rng.randint(1, top)
    n = rng.randint(3, 9)
    terms = [first + i * step for i in range(n)]
    answer = terms[-1]
    shown = ", ".join(str(t) for t in terms[:3])
    paths = [
        f"d={terms[1]}-{terms[0]}={step}. {first}+({n}-1)*{step}={first}+{(n - 1) * step}={answer}. "
        f"\\boxed{{{answer}}}",
        f"d={step}. {', '.join(str(t) for t in terms)}. \\boxed{{{answer}}}",
    ]
    return {"problem": f"Term {n} of {shown}, ...", "solutions": paths, "answer": str(answer)}


GENERATORS: dict[str, Callable[[random.Random, int], dict]] = {
    "arithmetic": arithmetic,
    "linear": linear,
    "modular": modular,
    "sequence": sequence,
}


def _unique_problems(domain: str, count: int, seen: set[str], rng: random.Random, top: int) -> list[dict]:
    """Draw `count` problems not in `seen`; give up with a clear error instead of looping forever."""
    generate = GENERATORS[domain]
    rows: list[dict] = []
    tries, max_tries = 0, 50 * count + 1000
    while len(rows) < count:
        tries += 1
        if tries > max_tries:
            raise ValueError(
                f"task: subdomain {domain} at this difficulty has too few distinct problems for the requested "
                f"split sizes (found {len(seen)}); lower task.train_size / probe_size / test_size or raise difficulty"
            )
        row = generate(rng, top)
        if row["problem"] in seen:
            continue
        seen.add(row["problem"])
        rows.append({"domain": domain, **row})
    return rows


def make_splits(
    seed: int = 0,
    difficulty: int = 1,
    domains: list[str] | tuple[str, ...] = DOMAINS,
    train_size: int = 2000,
    probe_size: int = 32,
    test_size: int = 50,
) -> dict[str, list[dict]]:
    """Deterministic, disjoint splits: `train` (train_size problems over all domains), and per-domain-sized
    `probe` and `test`. Test is drawn first, then probe, then train, so growing the training set never
    changes the evaluation sets."""
    unknown = [d for d in domains if d not in GENERATORS]
    if unknown:
        raise ValueError(f"task.domains: unknown subdomain {unknown[0]!r} (known: {', '.join(GENERATORS)})")
    if difficulty not in MAX_OPERAND:
        raise ValueError(f"task.difficulty: must be one of {sorted(MAX_OPERAND)}, got {difficulty}")
    top = MAX_OPERAND[difficulty]
    splits: dict[str, list[dict]] = {"train": [], "probe": [], "test": []}
    per_domain_train = [train_size // len(domains) + (i < train_size % len(domains)) for i in range(len(domains))]
    for index, domain in enumerate(domains):
        rng = random.Random(f"{seed}/{domain}/{difficulty}")
        seen: set[str] = set()
        for split, count in (("test", test_size), ("probe", probe_size), ("train", per_domain_train[index])):
            splits[split].extend(_unique_problems(domain, count, seen, rng, top))
    for split, rows in splits.items():
        for i, row in enumerate(rows):
            row["id"] = f"{split}-{i}"
    return splits
