"""How fast does one pretraining step of the embedded model run, in float32 and under bfloat16 autocast, with the
fused SDPA attention and the eager one? The ratio decides `ssp.pretrain.bfloat16_matmuls`.

    .venv/bin/python benchmarks/pretrain_precision.py [--batch-size 16] [--length 128] [--steps 20]

Times `--steps` AdamW steps (after 3 warm-up steps) of the demo's tiny model shape on random tokens, in this
process, for each of the four combinations, and prints seconds per step and the speed-up over float32 + SDPA (the
baseline, measured in the same run). docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import string
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from ssp.config import TinyModelSpec
from ssp.tiny_models import build_tiny_model


def seconds_per_step(model_dir: Path, attention: str, bfloat16: bool, batch_size: int, length: int, steps: int):
    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation=attention)
    vocabulary = model.config.vocab_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(0)
    batch = torch.randint(0, vocabulary, (batch_size, length))
    for step in range(steps + 3):
        if step == 3:
            started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; batch {args.batch_size} x {args.length} tokens")  # fmt: skip
    print("| attention | precision | s/step | speed-up |\n|---|---|---|---|")
    baseline = None
    model_dir = Path(tempfile.mkdtemp(prefix="ssp-precision-"))
    build_tiny_model(model_dir, [string.printable], TinyModelSpec(), seed=0)  # the demo's shape, random weights
    for attention, bfloat16 in (("sdpa", False), ("eager", False), ("sdpa", True), ("eager", True)):
        seconds = seconds_per_step(model_dir, attention, bfloat16, args.batch_size, args.length, args.steps)
        baseline = baseline or seconds
        precision = "bfloat16 autocast" if bfloat16 else "float32"
        print(f"| {attention} | {precision} | {seconds:.3f} | {baseline / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
