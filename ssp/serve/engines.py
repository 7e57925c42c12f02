"""The engines `ssp serve` streams tokens from: `engine.stream(prompt_ids, sampling, seed, stopped)` yields, step
by step, lists of `(sequence index, token id)` for the `sampling.n` sequences of one request; setting
`stopped[i]` ends sequence i at the engine's next step, and leaving the iterator (a client that went away) ends
them all.

- `TransformersEngine`: the model and tokenizer of the project's transformers backend
  (`ssp.generation.backends.TransformersBackend`), sampled with the same `generate` arguments
  (`ssp.generation.sampling.generate_kwargs`), CPU or GPU. One worker thread runs one request at a time (its `n`
  sequences in one batch): a seed then reproduces a response exactly, and two requests never split the cores.
  Requests wait for it in arrival order.
- `VLLMEngine`: vLLM's `AsyncLLM` (GPU, the `vllm` extra), which batches every running request continuously; each
  of a request's `n` sequences is its own vLLM request (seed + i), so each one can be stopped alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import queue
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ssp.config import SamplingConfig
from ssp.generation.backends import (
    BackendError,
    TransformersBackend,
    read_generation_config,
    resolve_backend,
    vllm_sampling_kwargs,
)
from ssp.generation.sampling import generate_kwargs
from ssp.generation.vllm_cpu import prepare_vllm_cpu
from ssp.models import load_tokenizer, stop_token_ids

Tokens = list[tuple[int, int]]  # (sequence index, token id) of one step


def get_engine(
    model_path: str | Path, backend: str = "auto", *, dtype: str = "auto", max_model_len: int | None = None
):
    """The serving engine for `model_path`: vLLM when it is importable and a GPU is present (`auto`)."""
    if resolve_backend(backend) == "vllm":
        return VLLMEngine(model_path, dtype=dtype, max_model_len=max_model_len)
    return TransformersEngine(model_path, dtype=dtype, max_model_len=max_model_len)


class _Job:
    def __init__(self, loop, prompt_ids: list[int], sampling: SamplingConfig, seed: int | None, stopped: list[bool]):
        self.loop, self.prompt_ids, self.sampling, self.seed, self.stopped = loop, prompt_ids, sampling, seed, stopped
        self.out: asyncio.Queue = asyncio.Queue()

    def send(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the event loop closed (the server stopped) while this request ran
            self.stopped[:] = [True] * len(self.stopped)


class _JobStreamer(BaseStreamer):
    """Hands each step's new tokens (one per sequence) to the request's queue; the first `put` is the prompt."""

    def __init__(self, job: _Job):
        self.job, self.prompt_seen = job, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.job.send([(i, int(t)) for i, t in enumerate(value.reshape(-1).tolist())])

    def end(self) -> None:
        pass


class _Stopped(StoppingCriteria):
    """Ends each sequence whose `stopped` flag is set (by the text rules, or by a client that went away)."""

    def __init__(self, stopped: list[bool]):
        self.stopped = stopped

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.tensor(self.stopped, dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    name = "transformers"

    def __init__(self, model_path: str | Path, dtype: str = "auto", max_model_len: int | None = None):
        backend = TransformersBackend(model_path, dtype=dtype)
        self.model, self.tokenizer = backend.model, backend.tokenizer
        self.stop_ids = set(stop_token_ids(self.tokenizer, self.model.generation_config))
        limits = [c for c in (backend.context, max_model_len) if c is not None]
        self.context = min(limits) if limits else None  # None: a model without a position limit
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="ssp-serve-generate", daemon=True)
        self._worker.start()

    async def stream(
        self, prompt_ids: list[int], sampling: SamplingConfig, seed: int | None, stopped: list[bool]
    ) -> AsyncIterator[Tokens]:
        job = _Job(asyncio.get_running_loop(), prompt_ids, sampling, seed, stopped)
        self._jobs.put(job)
        try:
            while (item := await job.out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # no await here: a cancelled request's scope would cancel it; the worker sees the flags
            stopped[:] = [True] * len(stopped)

    def close(self) -> None:
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if all(job.stopped):  # the client left while it waited
                job.send(None)
                continue
            try:
                self._generate(job)
            except Exception as exc:  # noqa: BLE001 - the request gets the error, the worker serves the next
                job.send(exc)
            job.send(None)

    @torch.no_grad()
    def _generate(self, job: _Job) -> None:
        if job.seed is not None:
            torch.manual_seed(job.seed)
        input_ids = torch.tensor([job.prompt_ids], device=self.model.device)
        self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=job.sampling.max_new_tokens,
            num_return_sequences=job.sampling.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.stop_ids),
            streamer=_JobStreamer(job),
            stopping_criteria=StoppingCriteriaList([_Stopped(job.stopped)]),
            **generate_kwargs(job.sampling),
        )


class VLLMEngine:
    name = "vllm"

    def __init__(self, model_path: str | Path, dtype: str = "auto", max_model_len: int | None = None):
        if importlib.util.find_spec("vllm") is None:
            raise BackendError("the vllm backend needs vLLM: install the optional extra ssp[vllm] on a CUDA machine")
        import vllm  # optional and CUDA only, so imported here
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM

        self.vllm, self.delta = vllm, RequestOutputKind.DELTA
        self.tokenizer = load_tokenizer(model_path)
        self.stop_ids = set(stop_token_ids(self.tokenizer, read_generation_config(model_path)))
        kwargs = {}
        if not torch.cuda.is_available():  # vLLM's CPU build, what `make test-vllm` runs (ssp.generation.vllm_cpu)
            prepare_vllm_cpu()
            kwargs = {"gpu_memory_utilization": 0.15, "enforce_eager": True}
        args = vllm.AsyncEngineArgs(
            model=str(model_path),
            dtype="bfloat16" if dtype == "auto" else dtype,
            max_model_len=max_model_len,
            **kwargs,
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.context = self.engine.model_config.max_model_len

    async def stream(
        self, prompt_ids: list[int], sampling: SamplingConfig, seed: int | None, stopped: list[bool]
    ) -> AsyncIterator[Tokens]:
        steps: asyncio.Queue = asyncio.Queue()
        one = dataclasses.replace(sampling, n=1)

        async def sequence(index: int) -> None:
            kwargs = vllm_sampling_kwargs(
                one, sampling.max_new_tokens, seed=None if seed is None else seed + index, stop_token_ids=[]
            )
            params = self.vllm.SamplingParams(**kwargs, output_kind=self.delta)
            try:
                request_id = f"ssp-{uuid.uuid4().hex}-{index}"
                async for output in self.engine.generate({"prompt_token_ids": prompt_ids}, params, request_id):
                    steps.put_nowait([(index, t) for t in output.outputs[0].token_ids])
                    if stopped[index]:
                        break  # leaving the generator aborts the vLLM request
            except Exception as exc:  # noqa: BLE001 - handed to the request
                steps.put_nowait(exc)
            steps.put_nowait(None)

        # vLLM stops at the EOS by itself (and returns it); the end-of-turn token is one of the stop ids SequenceText
        # watches for, which then sets `stopped`.
        tasks = [asyncio.create_task(sequence(i)) for i in range(sampling.n)]
        try:
            running = len(tasks)
            while running:
                item = await steps.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()

    def close(self) -> None:
        self.engine.shutdown()
