"""Generation backends behind one interface: `backend.generate(prompts, sampling, seed=...) -> Generations`.

`prompts` are conversations (lists of `{"role", "content"}` messages); the backend applies the model's chat
template, samples `sampling.n` completions per prompt and reports each one's text, token count and whether it was
cut at the token budget or at the model's context (`truncated`). Generation never runs past the model's context: a
prompt that leaves no room at all gets `n` empty, truncated completions.

- `TransformersBackend`: batched `model.generate` (`ssp.generation.sampling.sample`), CPU or GPU (bf16 and
  `device_map="auto"` on GPU, float32 on CPU). On GPU one `generate` call holds at most `GPU_MAX_SEQUENCES`
  sequences (prompts x n): a larger batch is split into sub-batches of `max(1, GPU_MAX_SEQUENCES // n)` prompts,
  sampled one after the other from the same seed, so results stay deterministic.
- `VLLMBackend`: vLLM (the GPU profile, `make install-gpu`; or vLLM's CPU build, which the tests run), with tensor
  parallelism, or one engine per process of a launch (`data_parallel`).

Both stop at every id of `ssp.models.stop_token_ids`: the EOS and the chat template's end-of-turn token.

`get_backend(model_path, backend="auto")` picks vLLM when it is importable and a GPU is present.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from ssp.config import RecipeError, SamplingConfig
from ssp.generation.sampling import Generations, sample
from ssp.generation.vllm_cpu import prepare_vllm_cpu
from ssp.models import load_model, load_tokenizer, resolve_dtype, stop_token_ids
from ssp.recipe_checks import looks_like_local_path

BACKENDS = ("auto", "transformers", "vllm")
# Sequences per transformers `generate` call on GPU: the eval defaults (64 prompts x n = 64) would put 4,096 long
# sequences in one call and run out of memory. CPU runs keep whole batches (no limit).
GPU_MAX_SEQUENCES = 64


class BackendError(RecipeError):
    """A backend that cannot be used here, or a model it cannot find."""


def vllm_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: str) -> str:
    """The backend `auto` stands for here: vLLM when it is importable and a GPU is present."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if backend == "auto":
        return "vllm" if vllm_available() else "transformers"
    return backend


def get_backend(
    model_path: str | Path,
    backend: str = "auto",
    *,
    dtype: str = "auto",
    chat_template: str | None = None,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    device: str | torch.device | None = None,
    data_parallel: bool = False,
):
    """A loaded backend for `model_path` (a local folder or a hub id). `tensor_parallel_size`,
    `gpu_memory_utilization` and `max_model_len` are vLLM's; the transformers backend spreads a model over all
    visible GPUs by itself (`device_map="auto"`) unless given its `device`. `data_parallel`: every process of a
    launch builds its own copy on its own device and samples its own prompts (`ssp.generation.parallel`)."""
    backend = resolve_backend(backend)
    if looks_like_local_path(str(model_path)) and not Path(model_path).expanduser().exists():
        raise BackendError(f"model folder not found: {model_path}")
    if backend == "vllm":
        return VLLMBackend(
            model_path,
            dtype=dtype,
            chat_template=chat_template,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            data_parallel=data_parallel,
        )
    return TransformersBackend(model_path, dtype=dtype, chat_template=chat_template, device=device)


def chat_texts(tokenizer, prompts: list[list[dict]]) -> list[str]:
    return [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]


def with_no_room(count: int, fits: list[int], sampled: Generations, n: int) -> Generations:
    """Generations of all `count` prompts: `sampled` holds those of the prompts `fits` (in order); every other
    prompt leaves no room in the context and gets n empty, truncated completions."""
    position = {index: j for j, index in enumerate(fits)}
    out = Generations()
    for i in range(count):
        j = position.get(i)
        out.texts.append([""] * n if j is None else sampled.texts[j])
        out.lengths.append([0] * n if j is None else sampled.lengths[j])
        out.truncated.append([True] * n if j is None else sampled.truncated[j])
    return out


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        model_path: str | Path,
        dtype: str = "auto",
        chat_template: str | None = None,
        max_sequences: int | None = None,
        device: str | torch.device | None = None,
    ):
        """`max_sequences`: the most sequences (prompts x n) one `generate` call holds; by default
        `GPU_MAX_SEQUENCES` on GPU and no limit on CPU. `device`: the one device to load the model on (each process
        of a launch uses its own); None spreads it over every visible GPU, or uses the CPU."""
        self.tokenizer = load_tokenizer(model_path, chat_template)
        if device is not None:
            on_cpu = torch.device(device).type == "cpu"
            precision = ("float32" if on_cpu else "auto") if dtype == "auto" else dtype
            self.model = load_model(model_path, dtype=precision, device=device)
        elif torch.cuda.is_available():
            self.model = AutoModelForCausalLM.from_pretrained(
                str(model_path), dtype=resolve_dtype(dtype), device_map="auto"
            )
        else:  # bf16 on CPU is slow and lossy
            self.model = load_model(model_path, dtype="float32" if dtype == "auto" else dtype, device="cpu")
        self.model.eval()
        self.context = getattr(self.model.config, "max_position_embeddings", None)
        if max_sequences is None and self.model.device.type == "cuda":
            max_sequences = GPU_MAX_SEQUENCES
        self.max_sequences = max_sequences

    def generate(
        self,
        prompts: list[list[dict]],
        sampling: SamplingConfig,
        *,
        seed: int | None = None,
        greedy: bool = False,
        desc: str = "sampling",
        progress: bool = True,
    ) -> Generations:
        if seed is not None:
            torch.manual_seed(seed)
        n = 1 if greedy else sampling.n
        texts = chat_texts(self.tokenizer, prompts)
        lengths = [len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        fits = [i for i, length in enumerate(lengths) if self.context is None or length < self.context]
        sampled = Generations()
        if fits:
            if self.max_sequences is not None and sampling.batch_size * n > self.max_sequences:
                # `sample` runs one generate call per batch_size prompts, one after the other from the seed above.
                sampling = dataclasses.replace(sampling, batch_size=max(1, self.max_sequences // n))
            sampled = sample(
                self.model, self.tokenizer, [prompts[i] for i in fits], sampling, greedy, desc=desc, progress=progress
            )
        return with_no_room(len(prompts), fits, sampled, n)

    def close(self) -> None:
        """Free the model (before the next one loads on the same device)."""
        self.model = None


def vllm_sampling_kwargs(
    sampling: SamplingConfig,
    max_tokens: int,
    greedy: bool = False,
    seed: int | None = None,
    stop_token_ids: list[int] | None = None,
):
    """vLLM `SamplingParams` arguments with the same meaning as the transformers backend's."""
    return {
        "n": 1 if greedy else sampling.n,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "top_k": -1 if greedy or sampling.top_k == 0 else sampling.top_k,  # vLLM's "off" is -1
        "repetition_penalty": sampling.repetition_penalty,
        "max_tokens": max_tokens,
        "seed": seed,
        "stop_token_ids": list(stop_token_ids or []),  # besides the tokenizer's EOS, which vLLM stops at anyway
        "skip_special_tokens": True,
    }


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        dtype: str = "auto",
        chat_template: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        data_parallel: bool = False,
    ):
        """`data_parallel`: this process is one of a launch's, with its own engine on its own GPU; built like TRL's
        colocated engine (`external_launcher`: vLLM runs inside this process and takes its device from the launch)
        instead of spawning workers that would all pick the first GPU."""
        if importlib.util.find_spec("vllm") is None:
            raise BackendError("the vllm backend needs vLLM: install the optional extra ssp[vllm] on a CUDA machine")
        import vllm  # optional and CUDA only, so imported here

        self.vllm = vllm
        self.tokenizer = load_tokenizer(model_path, chat_template)
        self.stop_token_ids = stop_token_ids(self.tokenizer, read_generation_config(model_path))
        kwargs = {"distributed_executor_backend": "external_launcher"} if data_parallel else {}
        # vLLM's CPU build (`vllm-cpu`, what the tests run): the memory fraction is of the machine's RAM, and
        # compiling the model graph costs more start-up than it saves.
        self.on_cpu = not torch.cuda.is_available()
        if self.on_cpu:
            prepare_vllm_cpu()  # its KV cache size, and plain linear layers (ssp.generation.vllm_cpu)
            gpu_memory_utilization = min(gpu_memory_utilization, 0.15)
            kwargs["enforce_eager"] = True
        self.llm = vllm.LLM(
            model=str(model_path),
            dtype="bfloat16" if dtype == "auto" else dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            **kwargs,
        )
        self.context = self.llm.llm_engine.model_config.max_model_len

    def generate(
        self,
        prompts: list[list[dict]],
        sampling: SamplingConfig,
        *,
        seed: int | None = None,
        greedy: bool = False,
        desc: str = "sampling",
        progress: bool = True,
    ) -> Generations:
        n = 1 if greedy else sampling.n
        texts = chat_texts(self.tokenizer, prompts)
        token_ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        fits = [i for i, ids in enumerate(token_ids) if len(ids) < self.context]
        params = [
            self.vllm.SamplingParams(
                **vllm_sampling_kwargs(
                    sampling,
                    min(sampling.max_new_tokens, self.context - len(token_ids[i])),  # never past the context
                    greedy,
                    # Per-request seeds fail on vLLM's CPU build ("CPU Generator does not use offset").
                    None if seed is None or self.on_cpu else seed + i,
                    self.stop_token_ids,
                )
            )
            for i in fits
        ]
        requests = [{"prompt_token_ids": token_ids[i]} for i in fits]
        outputs = self.llm.generate(requests, params, use_tqdm=progress) if requests else []
        sampled = Generations()
        for output in outputs:
            sampled.texts.append([c.text for c in output.outputs])
            sampled.lengths.append([len(c.token_ids) for c in output.outputs])
            sampled.truncated.append([c.finish_reason == "length" for c in output.outputs])
        return with_no_room(len(prompts), fits, sampled, n)

    def close(self) -> None:
        """Shut the engine down and free its memory (before the next model's engine starts)."""
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if shutdown is not None:
            shutdown()
        self.llm = None


def read_generation_config(model_path: str | Path):
    try:
        return GenerationConfig.from_pretrained(str(model_path))
    except OSError:
        return None
