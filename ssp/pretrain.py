"""Pretraining the embedded model, so the spectrum stage fine-tunes a base that already computes, as SSP assumes.

SSP starts from a pretrained base (Qwen2.5-Math): its SFT checkpoints stay close to one another, which is why
they can be averaged. A model trained from scratch at a from-scratch learning rate has checkpoints far apart, and
their average is worse than either. So the demo's `tiny` model is first pretrained here on generic arithmetic
text, once per machine (cached by its settings), and the spectrum stage then fine-tunes it at a fine-tuning rate.

The corpus is generic: lines of true statements in the notation the synthetic task's solutions are written in. Half
are the operations themselves over the operand range of the task's difficulty 1 (sums, differences, products,
divisions with remainder, exact divisions, arithmetic progressions, a term moved across an equation); half are single
computing steps taken out of worked solutions of random difficulty-1 problems (`9*8=72`, `d=16-8=8`,
`x=6/(-3)=-2`), so the base knows the facts the solutions use as often as they use them. It never holds a problem,
a whole solution, the order of a solution's steps or the chat format: what to answer, in which steps and in which
format is what the spectrum stage teaches.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
import re
import string
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import tokenizers
import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoTokenizer, LlamaForCausalLM

from ssp.data.synthetic import DOMAINS, GENERATORS, MAX_OPERAND
from ssp.files import staged_dir, write_json
from ssp.tiny_models import build_tiny_model

if TYPE_CHECKING:
    from ssp.config import TinyModelSpec

CORPUS_VERSION = 2  # part of the cache key: raise it when the corpus, the task's generators or the loop change
PRETRAIN_SEED = 0
TOP = 9  # largest operand in the corpus, as at the task's difficulty 1


# A computing step of a solution: an arithmetic identity, or one naming its result (`d=16-8=8`, `x=6/(-3)=-2`).
SOLUTION_STEP = re.compile(r"(?:[dx]=)?[-\d+*/()]+(?:=[-\d+*/()]+)+")


def _solution_step(rng: random.Random) -> str:
    """One computing step out of a worked solution of a random difficulty-1 problem of the synthetic task (an
    equation-solving step such as `4x-7x=7-4` is not a statement of arithmetic and is skipped)."""
    while True:
        problem = GENERATORS[rng.choice(DOMAINS)](rng, MAX_OPERAND[1])
        steps = [step for step in rng.choice(problem["solutions"]).split(". ") if SOLUTION_STEP.fullmatch(step)]
        if steps:
            return rng.choice(steps) + "."


def _statement(rng: random.Random) -> str:
    """One true statement of arithmetic, in the notation of the task's solutions: half of them a step of a solution,
    half an operation on one-digit operands, except the running total a step adds to, subtracts from or divides
    (up to 99)."""
    if rng.random() < 0.5:
        return _solution_step(rng)
    kind = rng.randrange(7)
    if kind == 0:
        a, b = rng.randint(0, 99 - TOP), rng.randint(0, TOP)
        return f"{a}+{b}={a + b}."
    if kind == 1:
        a, b = rng.randint(0, 99), rng.randint(0, TOP)
        return f"{a}-{b}={a - b}."
    if kind == 2:
        a, b = rng.randint(0, TOP), rng.randint(0, TOP)
        return f"{a}*{b}={a * b}."
    if kind == 3:
        total, m = rng.randint(0, 99), rng.randint(2, TOP)
        quotient, remainder = divmod(total, m)
        return f"{total}={quotient}*{m}+{remainder}."
    if kind == 4:
        quotient, m = rng.randint(-TOP, TOP), rng.choice([i for i in range(-TOP, TOP + 1) if i != 0])
        divisor = str(m) if m > 0 else f"({m})"
        return f"x={quotient * m}/{divisor}={quotient}."
    if kind == 5:
        first, step, n = rng.randint(0, TOP), rng.randint(1, TOP), rng.randint(3, 9)
        terms = [first + i * step for i in range(n)]
        if rng.random() < 0.5:
            return f"d={step}. {', '.join(str(t) for t in terms)}."
        return f"{first}+({n}-1)*{step}={first}+{(n - 1) * step}={terms[-1]}."
    a, c = rng.sample(range(1, TOP + 1), 2)
    return f"{a}x-{c}x={a - c}x."


def corpus_line(rng: random.Random) -> str:
    """A document: a few unrelated statements, as a page of worked arithmetic reads."""
    return " ".join(_statement(rng) for _ in range(rng.randint(3, 8)))


def _vocabulary_texts(rng: random.Random) -> list[str]:
    """What the tokenizer is trained on: printable ASCII, so every character of a later recipe's text encodes, and
    corpus lines for the merges. The base knows nothing of any task, as a hub base model does not."""
    return [string.printable] + [corpus_line(rng) for _ in range(2000)]


def bfloat16_matmuls() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX): there, autocast to bfloat16 with the
    eager attention trains the tiny model 1.4x faster (benchmarks/pretrain_precision.py); elsewhere bfloat16 on a
    CPU is slower than float32, so the loop stays in float32."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux
        return False


def pretrain_key(spec: TinyModelSpec, seed: int) -> str:
    """The cache name's hash: the settings, the corpus version, the precision of the loop and the libraries that
    build and train the model."""
    libraries = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    settings = {"spec": asdict(spec), "seed": seed, "version": CORPUS_VERSION, "libraries": libraries,
                "bfloat16": bfloat16_matmuls()}  # fmt: skip
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def cache_root() -> Path:
    """`SSP_CACHE` if set, else ~/.cache/ssp: shared by every run on the machine."""
    return Path(os.environ.get("SSP_CACHE") or Path.home() / ".cache" / "ssp")


def _blocks(tokenizer, rng: random.Random, batch_size: int, length: int) -> torch.Tensor:
    """`batch_size` blocks of `length` tokens cut from documents packed end to end, each preceded by BOS."""
    ids: list[int] = []
    while len(ids) < batch_size * length:
        ids.extend([tokenizer.bos_token_id, *tokenizer(corpus_line(rng), add_special_tokens=False)["input_ids"]])
    return torch.tensor(ids[: batch_size * length]).view(batch_size, length)


def pretrain_tiny_model(out_dir: Path, spec: TinyModelSpec, seed: int) -> Path:
    """Build the tiny model and train it on the corpus for `spec.pretrain.steps` steps (AdamW, cosine schedule
    after a short warm-up); save it with its tokenizer to `out_dir`. The weights stay float32; where the CPU
    multiplies bfloat16 in hardware the forward pass runs under bfloat16 autocast (`bfloat16_matmuls`)."""
    started = time.monotonic()
    rng = random.Random(f"pretrain/{seed}")
    build_tiny_model(out_dir, _vocabulary_texts(rng), spec, seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    bfloat16 = bfloat16_matmuls()
    # Under autocast the fused SDPA attention's backward runs 6x slower on a CPU than the eager one's matmuls.
    attention = "eager" if bfloat16 else "sdpa"
    model = LlamaForCausalLM.from_pretrained(out_dir, torch_dtype=torch.float32, attn_implementation=attention)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.pretrain.learning_rate, weight_decay=0.01)
    warmup = max(1, spec.pretrain.steps // 20)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, spec.pretrain.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    losses = []
    with tqdm(range(spec.pretrain.steps), desc="pretraining the tiny model") as bar:
        for step in bar:
            batch = _blocks(tokenizer, rng, spec.pretrain.batch_size, spec.pretrain.length)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if step % 50 == 0 or step == spec.pretrain.steps - 1:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    model.save_pretrained(out_dir)
    seconds = round(time.monotonic() - started, 1)
    record = {"spec": asdict(spec), "seed": seed, "bfloat16_autocast": bfloat16, "seconds": seconds, "loss": losses}
    write_json(out_dir / "pretraining.json", record)
    return out_dir


def pretrained_tiny_model(spec: TinyModelSpec) -> Path:
    """The pretrained tiny model for `spec`, from the machine's cache, built there the first time. Its seed is
    fixed: like a hub base model it is the same for every run, whatever the run's own seed."""
    folder = cache_root() / f"tiny-pretrained-{pretrain_key(spec, PRETRAIN_SEED)}"
    if (folder / "pretraining.json").is_file():  # the folder is renamed into place complete
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Runs starting together (a Slurm array, two sweeps, a cache on shared storage) build it once: the first takes
    # the lock and builds, the others wait and then find it built.
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "pretraining.json").is_file():
            with staged_dir(folder) as staging:
                pretrain_tiny_model(staging, spec, PRETRAIN_SEED)
    return folder
