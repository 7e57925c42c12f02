"""Work spread over a launch's processes: chunk c of the work is done by process c mod N, and every process gets
every chunk's result back, in chunk order.

Probing and evaluation sample through here, one chunk of `sampling.batch_size` prompts at a time, each chunk seeded
by `chunk_seed` from the run's seed, a name and the chunk's position. A chunk's samples therefore depend on its
prompts and its seed only, never on which process drew it or how many processes there are: 1 and 2 processes give
the same numbers (on the same kind of device and thread count; vLLM is not bitwise deterministic across batch
shapes). Every process works, so none waits at a barrier for the length of a whole evaluation.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TypeVar

import torch
from tqdm.auto import tqdm

T = TypeVar("T")


def chunk_seed(seed: int, name: str, chunk: int) -> int:
    """The sampling seed of one chunk: fixed by the run's seed, a name (a split or a benchmark) and the chunk's
    position."""
    return zlib.crc32(f"{seed}/{name}/{chunk}".encode())


def chunk_count(items: int, size: int) -> int:
    return (items + size - 1) // size


def world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside a launch."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def spread(count: int, work: Callable[[int], T], desc: str = "", progress: bool = True) -> list[T]:
    """`[work(0), ..., work(count - 1)]` on every process, each chunk computed by exactly one of them.

    Results travel as pickled objects (`all_gather_object`), so they should be small: scores and lengths, or
    texts, not tensors. The progress bar counts the main process's own chunks.
    """
    rank, size = world()
    mine = range(rank, count, size)
    local = {c: work(c) for c in tqdm(mine, desc=desc, leave=False, disable=not progress or rank != 0)}
    if size == 1:
        return [local[c] for c in range(count)]
    gathered: list[dict[int, T]] = [{} for _ in range(size)]
    torch.distributed.all_gather_object(gathered, local)
    merged = {c: result for part in gathered for c, result in part.items()}
    return [merged[c] for c in range(count)]
