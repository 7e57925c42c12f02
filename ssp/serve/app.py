"""The HTTP API of `ssp serve`: OpenAI's chat and text completions (streamed as server-sent events or whole),
`/v1/models`, `/health` and Prometheus `/metrics`, on FastAPI (docs/serving.md).

One request's life: the gate (`_Gate`: API key, body size) -> pydantic validation (protocol.py) -> a slot (429
with `Retry-After` when every slot is taken) -> the prompt's tokens against the context -> the engine's tokens
through `SequenceText` (stop strings, budget, reasoning cap) -> the response. The slot is freed when the response
ends, when a streaming client disconnects (Starlette cancels the stream; the engine's `stopped` flags end the
generation) and when a waiting non-streaming client disconnects.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import resource
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ssp.config import SamplingConfig
from ssp.generation.backends import chat_texts
from ssp.serve.protocol import (
    SERVING_PRESETS,
    ChatRequest,
    CompletionRequest,
    RequestError,
    request_sampling,
    validation_message,
)
from ssp.serve.text import SequenceText

RETRY_AFTER_S = 1  # what a 429 tells the client to wait


@dataclass
class ServeSettings:
    model_name: str  # the id /v1/models lists; `<id>:<preset>` names a preset
    default_sampling: SamplingConfig  # the default preset with the command line's overrides
    default_preset: str = "recommended"
    api_key: str | None = None  # required on every /v1 request when set
    max_concurrent_requests: int = 8  # running and waiting; one more is a 429
    max_request_bytes: int = 1 << 20
    max_thinking_tokens: int | None = None  # the server's reasoning-length cap; a request may only lower it


class _Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ssp_requests", "Finished requests", ["endpoint", "status"], registry=r)
        self.rejected = Counter("ssp_requests_rejected", "Requests refused before generating", ["reason"], registry=r)
        self.in_flight = Gauge("ssp_requests_in_flight", "Requests holding a slot (running or waiting)", registry=r)
        self.prompt_tokens = Counter("ssp_prompt_tokens", "Prompt tokens of served requests", registry=r)
        self.generated_tokens = Counter("ssp_generation_tokens", "Generated tokens", registry=r)
        self.first_token = Histogram("ssp_time_to_first_token_seconds", "Request start to first text", registry=r)
        self.latency = Histogram("ssp_request_seconds", "Whole request latency", ["endpoint"], registry=r)
        self.finish = Counter("ssp_finish_reasons", "Finished sequences by finish_reason", ["reason"], registry=r)
        # Memory, read when scraped: this process's peak RSS, its peak CUDA allocation (the transformers engine's
        # weights and KV cache), and what is in use on its GPUs by every process (vLLM's engine runs in another).
        Gauge("ssp_peak_rss_bytes", "Peak resident memory of the server process", registry=r).set_function(
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        Gauge("ssp_cuda_peak_allocated_bytes", "Peak CUDA memory torch allocated here", registry=r).set_function(
            lambda: sum(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count()))
        )
        Gauge("ssp_gpu_memory_in_use_bytes", "GPU memory in use, every process", registry=r).set_function(_gpu_in_use)


class _Gate:
    """Pure ASGI middleware (it must not buffer streamed responses): the API key on /v1 paths, compared in constant
    time, and the request body's size, checked before anything parses it."""

    def __init__(self, app, settings: ServeSettings, metrics: _Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.settings.api_key is not None and scope["path"].startswith("/v1/"):
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
            if not hmac.compare_digest(given, self.settings.api_key.encode()):
                self.metrics.rejected.labels("auth").inc()
                error = RequestError(
                    401, "invalid or missing API key (Authorization: Bearer <key>)", None, "auth_error"
                )
                return await _send_error(send, error)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.settings.max_request_bytes:
                self.metrics.rejected.labels("size").inc()
                limit = self.settings.max_request_bytes
                return await _send_error(send, RequestError(413, f"the body is over this server's {limit} bytes"))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # what follows the body: the disconnect

        return await self.app(scope, replay, send)


async def _send_error(send, error: RequestError, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(error.body()).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def build_app(engine, settings: ServeSettings) -> FastAPI:
    """The API over a loaded engine (`ssp.serve.engines`)."""
    app = FastAPI(title="ssp serve", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = _Metrics()
    slots = {"taken": 0}
    app.add_middleware(_Gate, settings=settings, metrics=metrics)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 429 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        metrics.rejected.labels("invalid").inc()
        message, param = validation_message(exc.errors())
        return JSONResponse(RequestError(400, message, param).body(), status_code=400)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model_name, "engine": engine.name}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        names = [settings.model_name] + [f"{settings.model_name}:{p}" for p in SERVING_PRESETS]
        created = int(time.time())
        data = [{"id": n, "object": "model", "created": created, "owned_by": "ssp", "max_model_len": engine.context}
                for n in names]  # fmt: skip
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        try:
            text = chat_texts(engine.tokenizer, [body.conversation()])[0]
        except Exception as exc:  # noqa: BLE001 - the chat template refused the conversation (e.g. its roles)
            raise RequestError(400, f"messages: the chat template refused them ({exc})", "messages") from None
        prompt_ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        return await _respond(body, request, prompt_ids, "messages", chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        prompt_ids = engine.tokenizer(body.prompt_text())["input_ids"]
        return await _respond(body, request, prompt_ids, "prompt", chat=False)

    async def _respond(body, request: Request, prompt_ids: list[int], prompt_field: str, chat: bool):
        endpoint = "chat" if chat else "completions"
        started = time.perf_counter()
        body.refuse_unsupported()
        sampling, thinking_cap = _plan(body, prompt_ids, prompt_field)
        stops = body.stop_strings()
        if slots["taken"] >= settings.max_concurrent_requests:
            metrics.rejected.labels("busy").inc()
            limit = settings.max_concurrent_requests
            raise RequestError(429, f"all {limit} request slots are taken; retry later", None, "rate_limit_error")
        slots["taken"] += 1
        metrics.in_flight.inc()
        metrics.prompt_tokens.inc(len(prompt_ids))
        released = False

        def release(status: int) -> None:
            nonlocal released
            if not released:
                released = True
                slots["taken"] -= 1
                metrics.in_flight.dec()
                metrics.requests.labels(endpoint, str(status)).inc()
                metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

        response_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        head = {"id": response_id, "created": int(time.time()), "model": body.model or settings.model_name}
        events = _generate(prompt_ids, sampling, body.seed, stops, thinking_cap, started)
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                _stream(events, head, chat, body.n, len(prompt_ids), include_usage, release),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        task = asyncio.ensure_future(_collect(events, body.n))
        try:
            while not task.done():  # a client that gives up frees its slot
                await asyncio.wait({task}, timeout=0.5)
                if not task.done() and await request.is_disconnected():
                    task.cancel()
                    release(499)
                    return JSONResponse({}, status_code=499)
            texts, reasons, tokens = task.result()
        except BaseException:
            release(500)
            raise
        release(200)
        usage = _usage(len(prompt_ids), tokens)
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": r,
                        "logprobs": None} for i, (t, r) in enumerate(zip(texts, reasons, strict=True))]  # fmt: skip
            return {**head, "object": "chat.completion", "choices": choices, "usage": usage}
        choices = [{"index": i, "text": t, "finish_reason": r, "logprobs": None}
                   for i, (t, r) in enumerate(zip(texts, reasons, strict=True))]  # fmt: skip
        return {**head, "object": "text_completion", "choices": choices, "usage": usage}

    def _plan(body, prompt_ids: list[int], prompt_field: str) -> tuple[SamplingConfig, int | None]:
        """The request's sampling with its budget clipped to the context, and its reasoning cap."""
        sampling = request_sampling(body, settings.model_name, settings.default_sampling, settings.default_preset)
        context = engine.context
        requested = body.token_budget()
        if context is not None:
            if requested is not None and requested > context:
                name = "max_completion_tokens" if getattr(body, "max_completion_tokens", None) else "max_tokens"
                raise RequestError(400, f"{name}: {requested} is over this server's limit of {context} tokens", name)
            if len(prompt_ids) >= context:
                raise RequestError(
                    400, f"{prompt_field}: the prompt is {len(prompt_ids)} tokens; the context is {context}",
                    prompt_field,
                )  # fmt: skip
            sampling.max_new_tokens = min(sampling.max_new_tokens, context - len(prompt_ids))
        caps = [c for c in (settings.max_thinking_tokens, body.max_thinking_tokens) if c is not None]
        return sampling, min(caps) if caps else None

    async def _generate(prompt_ids, sampling, seed, stops, thinking_cap, started) -> AsyncIterator[list]:
        """Steps of `(index, new text, finish_reason or None)` for the request's sequences."""
        texts = [
            SequenceText(engine.tokenizer, engine.stop_ids, stops, sampling.max_new_tokens, thinking_cap)
            for _ in range(sampling.n)
        ]
        stopped = [False] * sampling.n
        first = True
        async with aclosing(engine.stream(prompt_ids, sampling, seed, stopped)) as steps:
            async for step in steps:
                events = []
                for index, token in step:
                    sequence = texts[index]
                    if sequence.finish_reason is not None:
                        continue
                    delta = sequence.add(token)
                    stopped[index] = sequence.finish_reason is not None
                    if delta or stopped[index]:
                        events.append((index, delta, sequence.finish_reason))
                if events:
                    if first:
                        first = False
                        metrics.first_token.observe(time.perf_counter() - started)
                    yield events
                if all(stopped):
                    break
        tail = [(i, s.end(), s.finish_reason) for i, s in enumerate(texts) if s.finish_reason is None]
        for sequence in texts:
            metrics.generated_tokens.inc(sequence.tokens)
            metrics.finish.labels(sequence.finish_reason).inc()
        yield tail + [(-1, sum(s.tokens for s in texts), None)]  # the last event: the request's token count

    async def _collect(events: AsyncIterator[list], n: int):
        texts, reasons, tokens = [""] * n, [None] * n, 0
        async for step in events:
            for index, delta, reason in step:
                if index < 0:
                    tokens = delta
                    continue
                texts[index] += delta
                reasons[index] = reason or reasons[index]
        return texts, reasons, tokens

    async def _stream(events, head, chat: bool, n: int, prompt_tokens: int, include_usage: bool, release):
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices, **extra) -> str:
            return f"data: {json.dumps({**head, 'object': kind, 'choices': choices, **extra})}\n\n"

        status = 500
        try:
            if chat:
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                              "logprobs": None} for i in range(n)])  # fmt: skip
            async for step in events:
                choices = []
                for index, delta, reason in step:
                    if index < 0:
                        if include_usage:
                            yield chunk([], usage=_usage(prompt_tokens, delta))
                        continue
                    if chat:
                        choices.append({"index": index, "delta": {"content": delta} if delta else {},
                                        "finish_reason": reason, "logprobs": None})  # fmt: skip
                    else:
                        choices.append({"index": index, "text": delta, "finish_reason": reason, "logprobs": None})
                if choices:
                    yield chunk(choices)
            yield "data: [DONE]\n\n"
            status = 200
        except asyncio.CancelledError:
            status = 499  # the client went away; closing `events` stopped its generation
            raise
        finally:
            try:
                await events.aclose()  # ends the generation, at once: nothing in it waits
            finally:
                release(status)

    return app


def _gpu_in_use() -> float:
    used = 0
    for device in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(device)
        used += total - free
    return used


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
