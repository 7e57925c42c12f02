"""The prepared GPU check: what a real run's parts cost on one GPU, measured on a model shaped like
Qwen2.5-Math-1.5B with random weights (nothing is downloaded), written to one JSON file.

    bash benchmarks/gpu_check.sh [OUT.json]          # on a GPU machine with the GPU profile (make install-gpu)
    .venv/bin/python benchmarks/gpu_check.py --small  # the same code on a tiny model on CPU (what the tests run)

Parts, each timed and recorded (a part that fails records its error and the rest go on):
1. SFT through TRL's SFTTrainer with ssp's SFT config: tokens/s, MFU (6N per token plus attention, the plan's
   formula) and the useful-token fraction (real tokens over padded tokens) at 4K and 16K sequences;
2. generation tokens/s, the transformers backend against vLLM, on the same prompts;
3. one probing pass (sample, score, summarise) through vLLM;
4. one GRPO step with colocated vLLM (MGPOTrainer);
5. `ssp plan`'s predicted peak memory per GPU next to the measured peak of each part.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import random
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from trl import SFTTrainer  # noqa: E402

from ssp.config import DataSource, RLSection, SamplingConfig, TaskConfig, load_recipe  # noqa: E402
from ssp.data.loading import load_split  # noqa: E402
from ssp.evaluation.evaluate import evaluate_model  # noqa: E402
from ssp.generation.backends import get_backend  # noqa: E402
from ssp.generation.vllm_cpu import prepare_vllm_cpu  # noqa: E402
from ssp.models import load_tokenizer  # noqa: E402
from ssp.plan.formulas import (  # noqa: E402
    DEVICES,
    Assumptions,
    activations_gib,
    architecture_from_config,
    training_states_gib,
)
from ssp.rewards import get_reward  # noqa: E402
from ssp.signal.config import build_mgpo_config  # noqa: E402
from ssp.signal.trainer import MGPOTrainer  # noqa: E402
from ssp.spectrum.run import build_sft_config  # noqa: E402
from ssp.tiny_models import QwenShape, build_qwen_shaped_model  # noqa: E402

FULL = QwenShape(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2, intermediate_size=8960,
                 max_position_embeddings=32768, vocab_size=151936)  # fmt: skip
SMALL = QwenShape(max_position_embeddings=4096)
WORDS = "Let x be the number of apples so that 3 x plus 7 equals 22 hence x equals 5 and the answer is".split()


def peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def text_of(tokens: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


def device_peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0).upper()
    return next((d.peak_tflops for key, d in DEVICES.items() if key.split("-")[0] in name), None)


def sft_throughput(model_dir: Path, length: int, steps: int, out: Path) -> dict:
    """Tokens/s of SFT at sequences of up to `length` tokens (lengths drawn from [length/2, length], batch 2)."""
    rng = random.Random(0)
    examples = []
    for _ in range(2 * steps):
        words = rng.randint(length // 4, length // 2)  # about two tokens a word with this tokenizer
        examples.append({"prompt": [{"role": "user", "content": "Solve it."}],
                         "completion": [{"role": "assistant", "content": text_of(words, rng)}]})  # fmt: skip
    overrides = [f"output_dir={out}", "sft.max_steps=" + str(steps), "sft.per_device_train_batch_size=2",
                 "sft.gradient_accumulation_steps=1", f"sft.max_length={length}", "sft.report_to=[]",
                 f"sft.save_every={steps * 10}", "sft.logging_steps=1", "sft.trl.dataset_num_proc=1"]  # fmt: skip
    recipe = load_recipe(REPO / "recipes" / "sft.yaml", overrides, check_files=False)
    if not torch.cuda.is_available():
        recipe.sft.bf16, recipe.sft.gradient_checkpointing = False, True
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16 if torch.cuda.is_available() else None
    )
    shapes: list[tuple[int, int]] = []
    trainer = SFTTrainer(model=model, args=build_sft_config(recipe, out), train_dataset=Dataset.from_list(examples),
                         processing_class=load_tokenizer(model_dir))  # fmt: skip
    original = trainer.compute_loss

    def counting(model, inputs, *args, **kwargs):
        shapes.append((inputs["input_ids"].numel(), int(inputs["attention_mask"].sum())))
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = counting
    reset_peak()
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    arch = architecture_from_config(model.config.to_dict())
    padded, useful = sum(s[0] for s in shapes), sum(s[1] for s in shapes)
    mean = useful / max(len(shapes), 1) / 2
    flops = useful * (6 * arch.parameters + 3 * arch.num_layers * arch.hidden_size * mean)
    peak = device_peak_tflops()
    predicted = {**training_states_gib(arch, Assumptions(gpus=1, zero_stage=0)),
                 **activations_gib(arch, 2, length, recipe.sft.gradient_checkpointing)}  # fmt: skip
    return {
        "length": length,
        "steps": steps,
        "seconds": seconds,
        "tokens_per_second": useful / seconds,
        "useful_token_fraction": useful / padded,
        "mfu": None if peak is None else flops / seconds / (peak * 1e12),
        "peak_gib_measured": peak_gib(),
        "peak_gib_predicted": sum(predicted.values()),
        "note": "padded batches (TRL's default; padding_free would raise the useful fraction to 1)",
    }


def generation_throughput(model_dir: Path, backend: str, prompts: int, tokens: int) -> dict:
    sampling = SamplingConfig(n=4, temperature=1.0, top_p=1.0, max_new_tokens=tokens, batch_size=prompts)
    reset_peak()
    engine = get_backend(model_dir, backend, dtype="auto")
    conversations = [[{"role": "user", "content": f"Compute {i} + {i}."}] for i in range(prompts)]
    started = time.perf_counter()
    generations = engine.generate(conversations, sampling, seed=0, progress=False)
    seconds = time.perf_counter() - started
    engine.close()
    return {"backend": backend, "sequences": prompts * 4, "tokens": generations.tokens, "seconds": seconds,
            "tokens_per_second": generations.tokens / seconds, "peak_gib_measured": peak_gib()}  # fmt: skip


def probing_pass(model_dir: Path, backend: str, tokens: int) -> dict:
    rows = load_split([DataSource(split="probe")], TaskConfig(probe_size=16), "data.probe")
    sampling = SamplingConfig(n=8, temperature=1.0, top_p=0.95, max_new_tokens=tokens, batch_size=64)
    started = time.perf_counter()
    result = evaluate_model(model_dir, rows, sampling, [1, 8], seed=0, name="probe", backend=backend, progress=False)
    seconds = time.perf_counter() - started
    return {"backend": result["backend"], "problems": len(rows), "samples": 8, "seconds": seconds,
            "tokens_per_second": result["tokens_generated"] / seconds}  # fmt: skip


def grpo_step(model_dir: Path, use_vllm: bool, tokens: int, out: Path) -> dict:
    rl = RLSection(per_device_train_batch_size=16, num_generations=8, max_completion_length=tokens, max_steps=1,
                   logging_steps=1, rewards={"boxed_match": 1.0}, use_vllm=use_vllm, gradient_checkpointing=True,
                   bf16=torch.cuda.is_available(),
                   trl={"vllm_gpu_memory_utilization": 0.3, "vllm_max_model_length": tokens + 256})  # fmt: skip
    prompts = [{"prompt": [{"role": "user", "content": f"Compute {i} + {i}."}], "answer": str(2 * i)}
               for i in range(16)]  # fmt: skip
    if use_vllm and not torch.cuda.is_available():
        prepare_vllm_cpu()  # vLLM's CPU build (the --small run); see ssp.generation.vllm_cpu
    reset_peak()
    trainer = MGPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_funcs=[get_reward("boxed_match")],
        args=build_mgpo_config(rl, out, "gpu-check", 0, model_path=str(model_dir)),
        train_dataset=Dataset.from_list(prompts),
        processing_class=load_tokenizer(model_dir),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"use_vllm": use_vllm, "completions": 16, "max_completion_length": tokens, "seconds": seconds,
            "tokens_generated": trainer.tokens_generated, "peak_gib_measured": peak_gib()}  # fmt: skip


def run(part: str, results: dict, work) -> None:
    started = time.perf_counter()
    try:
        results[part] = work()
    except Exception as exc:  # a part that fails is recorded; the check goes on with the others
        results[part] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                         "traceback": traceback.format_exc()[-2000:]}  # fmt: skip
    results[part]["wall_seconds"] = time.perf_counter() - started
    print(f"{part}: {json.dumps({k: v for k, v in results[part].items() if k != 'traceback'})}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--work", default="runs/gpu-check", help="the model and trainer folders go here")
    parser.add_argument("--small", action="store_true", help="a tiny model and short sequences (CPU, tests)")
    args = parser.parse_args()
    work = Path(args.work)
    shape = SMALL if args.small else FULL
    lengths, steps, tokens = ([256], 2, 16) if args.small else ([4096, 16384], 4, 1024)
    vllm = importlib.util.find_spec("vllm") is not None
    results: dict = {"shape": dataclasses.asdict(shape), "small": args.small, "vllm_installed": vllm,
                     "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}  # fmt: skip
    started = time.perf_counter()
    model_dir = work / "model"
    dtype = torch.bfloat16 if not args.small else torch.float32
    build_qwen_shaped_model(model_dir, WORDS + [" ".join(WORDS)], shape, seed=0, dtype=dtype)
    results["build_seconds"] = time.perf_counter() - started
    for length in lengths:
        run(f"sft_{length}", results, lambda length=length: sft_throughput(model_dir, length, steps, work / "sft"))
    prompts = 8 if args.small else 64
    run("generate_transformers", results, lambda: generation_throughput(model_dir, "transformers", prompts, tokens))
    if vllm:
        run("generate_vllm", results, lambda: generation_throughput(model_dir, "vllm", prompts, tokens))
        run("probe_vllm", results, lambda: probing_pass(model_dir, "vllm", tokens))
    run("grpo_step", results, lambda: grpo_step(model_dir, vllm, tokens, work / "grpo"))
    if (
        vllm
        and "tokens_per_second" in results.get("generate_transformers", {})
        and "tokens_per_second" in results.get("generate_vllm", {})
    ):
        results["vllm_over_transformers"] = (
            results["generate_vllm"]["tokens_per_second"] / results["generate_transformers"]["tokens_per_second"]
        )
    results["total_seconds"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
