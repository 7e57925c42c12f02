"""`ssp validate --model PATH | --url URL`: a served model's figures, each one measured, with how and on how many.

Everything goes through the HTTP API (with `--model`, `ssp serve` runs in this process on a free loopback port),
so a figure means the same for a local model and for a deployed server:

1. accuracy: `--math-limit` problems of a math benchmark and `--code-limit` of a code benchmark, one sample each
   with the task presets (mathematical_reasoning, code_generation), scored by the project's rewards
   (`ssp.rewards.scoring.score`: math-verify, the code sandbox) and summarized as `ssp eval` does;
2. latency: `--latency-requests` streamed requests one after another (the same prompt, `--latency-tokens` tokens
   each): time to first token and to the whole response, p50 and p95, and tokens per second;
3. concurrency: 1, 2, 4, ... clients at once, `--requests-per-client` requests each, until a level loses a request
   (an error, a 429) or its p95 latency passes `--latency-bound`; the last level that did neither is held;
4. memory: the server's `/metrics` (`ssp_peak_rss_bytes`, CUDA peaks) after the load.

A figure that was not measured (a benchmark skipped, a server without ssp's metrics) says so instead of a number.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from ssp.config import RecipeError
from ssp.data.benchmarks import BENCHMARKS, get_spec, load_benchmark
from ssp.evaluation.report import benchmark_metrics
from ssp.files import write_json
from ssp.generation.backends import BACKENDS
from ssp.generation.presets import PRESETS
from ssp.rewards.math_answers import extract_answer
from ssp.rewards.scoring import score, start_code_sandbox
from ssp.serve.app import build_app
from ssp.serve.engines import get_engine
from ssp.serve.server import API_KEY_ENV, ServeConfig, check_serve_config

LATENCY_PROMPT = "Compute 17 * 23 step by step and put the answer in \\boxed{}."


@dataclass
class ValidateConfig:
    model: str | None = None
    url: str | None = None
    api_key: str | None = None
    backend: str = "auto"
    data_dir: str | None = None
    math_benchmark: str = "math500"
    math_limit: int = 32
    code_benchmark: str = "humaneval"
    code_limit: int = 16
    max_tokens: int | None = None  # the accuracy requests' budget (default: the presets' 2,048 / 4,096)
    latency_requests: int = 16
    latency_tokens: int = 128
    max_concurrency: int = 16
    requests_per_client: int = 2
    latency_bound: float = 30.0  # seconds, p95 of whole responses
    timeout: float = 600.0  # seconds per request
    out: str = "runs/validate"
    seed: int = 0


def add_validate_arguments(parser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="a model folder: served here on a free loopback port while it is measured")
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", help=f"the server's key (default: ${API_KEY_ENV})")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="with --model (auto: vLLM with a GPU)")
    parser.add_argument("--data-dir", help="benchmark files laid out like ../shared/data (default: the hub)")
    names = ", ".join(BENCHMARKS)
    parser.add_argument("--math-benchmark", default="math500", help=f"a math benchmark or none ({names})")
    parser.add_argument("--math-limit", type=int, default=32, help="its first N problems")
    parser.add_argument("--code-benchmark", default="humaneval", help="a code benchmark or none")
    parser.add_argument("--code-limit", type=int, default=16, help="its first N problems")
    parser.add_argument("--max-tokens", type=int, help="budget of the accuracy requests (default: the presets')")
    parser.add_argument("--latency-requests", type=int, default=16)
    parser.add_argument("--latency-tokens", type=int, default=128, help="max_tokens of the latency requests")
    parser.add_argument("--max-concurrency", type=int, default=16, help="the most clients at once to try")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--latency-bound", type=float, default=30.0, help="seconds: p95 a held level stays under")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    parser.add_argument("--out", default="runs/validate", help="folder of validate.json")
    parser.add_argument("--seed", type=int, default=0)


def run_validate_command(args) -> int:
    config = ValidateConfig(**{k: v for k, v in vars(args).items() if k != "command"})
    report = run_validate(config)
    print("\n".join(report_table(report)))
    print(f"report: {Path(config.out) / 'validate.json'}")
    return 0


def check_validate_config(config: ValidateConfig) -> dict[str, list[dict]]:
    """The arguments checked and the benchmark rows read, before a model loads or a request is sent."""
    for name in ("math_limit", "code_limit", "latency_requests", "latency_tokens", "max_concurrency",
                 "requests_per_client"):  # fmt: skip
        if getattr(config, name) < 1:
            raise RecipeError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(config, name)}")
    rows = {}
    for kind, name, limit in (("math", config.math_benchmark, config.math_limit),
                              ("code", config.code_benchmark, config.code_limit)):  # fmt: skip
        if name == "none":
            continue
        if get_spec(name).kind != kind:
            raise RecipeError(f"--{kind}-benchmark: {name} is a {get_spec(name).kind} benchmark")
        rows[kind] = load_benchmark(name, config.data_dir, limit)
    return rows


def run_validate(config: ValidateConfig) -> dict:
    rows = check_validate_config(config)
    if "code" in rows:
        start_code_sandbox()  # a sandbox that cannot start fails here, before the model loads
    if config.model is not None:
        settings = check_serve_config(ServeConfig(model=config.model, backend=config.backend, api_key=config.api_key))
        with local_server(config.model, settings, config.backend) as url:
            report = asyncio.run(measure(url, settings.api_key, rows, config, local=True))
    else:
        api_key = config.api_key if config.api_key is not None else os.environ.get(API_KEY_ENV)
        report = asyncio.run(measure(config.url.rstrip("/"), api_key, rows, config))
    report["target"] = {"model": config.model} if config.model else {"url": config.url}
    write_json(Path(config.out) / "validate.json", report)
    return report


@contextmanager
def local_server(model: str, settings, backend: str) -> Iterator[str]:
    """`ssp serve` on a free loopback port in a thread of this process, for as long as the block runs."""
    engine = get_engine(model, backend)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(build_app(engine, settings), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RecipeError(f"the local server did not start on 127.0.0.1:{port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        engine.close()


def figure(value, unit: str, how: str, samples: int | None, **extra) -> dict:
    """One measured figure; `value` None: not measured, and `how` says why."""
    return {"value": value, "unit": unit, "how": how, "samples": samples, **extra}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def measure(
    url: str, api_key: str | None, rows: dict[str, list[dict]], config: ValidateConfig, local: bool = False
) -> dict:
    """Every figure, measured against the server at `url`; `local`: it runs in this process (`--model`)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=config.max_concurrency * 2 + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=config.timeout, limits=limits) as client:
        listed = await client.get("/v1/models")
        if listed.status_code != 200:
            raise RecipeError(f"{url}/v1/models answered {listed.status_code}: {listed.text[:200]}")
        served = listed.json()["data"][0]
        figures = {}
        for kind, preset in (("math", "mathematical_reasoning"), ("code", "code_generation")):
            figures[f"{kind}_accuracy"] = await accuracy(client, served, rows.get(kind), kind, preset, config)
        figures.update(await latency(client, served, config))
        held, levels = await concurrency(client, served, config)
        figures["concurrency_held"] = held
        figures.update(await memory(client, local))
    return {"model": served["id"], "max_model_len": served.get("max_model_len"), "figures": figures,
            "concurrency_levels": levels}  # fmt: skip


async def streamed(client: httpx.AsyncClient, body: dict) -> dict:
    """One streamed chat completion: its status, text, time to first text and to the end, tokens, finish."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    started, first, parts, usage, finish = time.perf_counter(), None, [], None, None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return {"status": response.status_code, "error": error_message(response)}
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                usage = chunk.get("usage") or usage
                for choice in chunk["choices"]:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        first = first if first is not None else time.perf_counter() - started
                        parts.append(content)
                    finish = choice.get("finish_reason") or finish
    except httpx.HTTPError as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}
    total = time.perf_counter() - started
    tokens = usage["completion_tokens"] if usage else None
    return {"status": 200, "text": "".join(parts), "first": first, "total": total, "tokens": tokens, "finish": finish}


def error_message(response: httpx.Response) -> str:
    """The `error.message` of an OpenAI-style error body, else the body's start."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


async def accuracy(client, served: dict, rows: list[dict] | None, kind: str, preset: str, config) -> dict:
    unit = "pass@1" if kind == "math" else "pass rate"
    if rows is None:
        return figure(None, unit, f"not measured (--{kind}-benchmark none)", None)
    sampling = PRESETS[preset]
    budget = config.max_tokens or sampling.max_new_tokens
    if served.get("max_model_len"):
        budget = min(budget, served["max_model_len"])  # the server clips it to what the prompt leaves

    async def ask(i: int, row: dict) -> dict:
        body = {"model": served["id"], "messages": [{"role": "user", "content": row["prompt"]}], "preset": preset,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": budget,
                "seed": config.seed + i}  # fmt: skip
        async with gate:
            return await streamed(client, body)

    gate = asyncio.Semaphore(4)
    answers = await asyncio.gather(*(ask(i, row) for i, row in enumerate(rows)))
    texts = [a.get("text", "") if a["status"] == 200 else "" for a in answers]
    scores = score(rows, [[t] for t in texts], raise_on_sandbox_error=True)
    samples = [[{"correct": s[0].correct, "answer": extract_answer(t), "completion": t, "length": a.get("tokens") or 0,
                 "truncated": a.get("finish") in ("length", "thinking_length")}]
               for s, t, a in zip(scores, texts, answers, strict=True)]  # fmt: skip
    metrics = benchmark_metrics(kind, samples)
    failed = [a for a in answers if a["status"] != 200]
    name = rows[0]["domain"]
    how = (
        f"first {len(rows)} problems of {name}, 1 sample each ({preset}: T {sampling.temperature}, top_p "
        f"{sampling.top_p}, max_tokens {budget}), scored by {rows[0]['reward']}"
    )
    if failed:
        how += f"; {len(failed)} requests refused, scored wrong (first: {failed[0]['status']} {failed[0]['error']})"
    extra = {"stderr": metrics["pass@1_stderr"], "failed_requests": len(failed), "truncated": metrics["truncated"]}
    return figure(metrics["pass@1"], unit, how, len(rows), **extra)


def latency_request(served: dict, config) -> dict:
    """The request the latency and concurrency figures time: one short chat turn, the same every time."""
    return {"model": served["id"], "messages": [{"role": "user", "content": LATENCY_PROMPT}],
            "max_tokens": config.latency_tokens, "seed": config.seed}  # fmt: skip


async def latency(client, served: dict, config) -> dict:
    body = latency_request(served, config)
    results = [await streamed(client, body) for _ in range(config.latency_requests)]
    ok = [r for r in results if r["status"] == 200]
    n = len(ok)
    how = f"{n} streamed requests one after another, one client, max_tokens {config.latency_tokens}"
    if len(ok) < len(results):
        how += f" ({len(results) - n} failed: {next(r['error'] for r in results if r['status'] != 200)})"
    firsts = [r["first"] for r in ok if r["first"] is not None]
    totals = [r["total"] for r in ok]
    tokens = sum(r["tokens"] or 0 for r in ok)
    missing = figure(None, "s", "not measured (no request answered)", 0)
    out = {
        "first_token_p50": figure(percentile(firsts, 50), "s", how, len(firsts)) if firsts else missing,
        "first_token_p95": figure(percentile(firsts, 95), "s", how, len(firsts)) if firsts else missing,
        "latency_p50": figure(percentile(totals, 50), "s", how, n) if n else missing,
        "latency_p95": figure(percentile(totals, 95), "s", how, n) if n else missing,
    }
    rate_how = f"{tokens} completion tokens (the server's usage) over {sum(totals):.1f} s of those requests"
    out["tokens_per_second"] = figure(tokens / sum(totals) if n else None, "tokens/s", rate_how, n)
    return out


async def concurrency(client, served: dict, config) -> tuple[dict, list[dict]]:
    """Doubling levels of concurrent clients; the held level is the last that lost nothing and kept p95 under the
    bound."""
    body = latency_request(served, config)
    levels, held, clients = [], None, 1
    while clients <= config.max_concurrency:

        async def one_client() -> list[dict]:
            return [await streamed(client, body) for _ in range(config.requests_per_client)]

        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(one_client() for _ in range(clients))) for r in rs]
        wall = time.perf_counter() - started
        ok = [r for r in results if r["status"] == 200]
        p95 = percentile([r["total"] for r in ok], 95) if ok else None
        level = {"clients": clients, "requests": len(results), "answered": len(ok),
                 "rejected_429": sum(r["status"] == 429 for r in results),
                 "errors": sum(r["status"] not in (200, 429) for r in results), "latency_p95": p95,
                 "tokens_per_second": sum(r["tokens"] or 0 for r in ok) / wall}  # fmt: skip
        levels.append(level)
        if len(ok) < len(results) or p95 > config.latency_bound:
            break
        held = clients
        clients = config.max_concurrency if clients < config.max_concurrency < clients * 2 else clients * 2
    tried = ", ".join(str(level["clients"]) for level in levels)
    how = (
        f"concurrent clients {tried}, {config.requests_per_client} streamed requests each (max_tokens "
        f"{config.latency_tokens}): the most that lost no request and kept p95 under {config.latency_bound:g} s"
    )
    if held == config.max_concurrency:
        how += " (the most tried: --max-concurrency)"
    return figure(held, "clients", how, sum(level["requests"] for level in levels)), levels


async def memory(client, local: bool) -> dict:
    response = await client.get("/metrics")
    values = {}
    if response.status_code == 200:
        for line in response.text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("ssp_peak_rss_bytes", "ssp_cuda_peak_allocated_bytes", "ssp_gpu_memory_in_use_bytes"):
                values[name] = float(value)
    why = "not measured (the server's /metrics has no ssp memory gauges)"
    rss = values.get("ssp_peak_rss_bytes")
    process = "this process's (the server's and, with --model, the client's)" if local else "the server process's"
    out = {"peak_memory_cpu": figure(rss, "bytes", f"{process} peak RSS (/metrics, after the load)", None)
           if rss is not None else figure(None, "bytes", why, None)}  # fmt: skip
    gpu = max(values.get("ssp_cuda_peak_allocated_bytes", 0), values.get("ssp_gpu_memory_in_use_bytes", 0))
    out["peak_memory_gpu"] = (
        figure(gpu, "bytes", "the larger of torch's CUDA peak and the GPUs' memory in use (/metrics)", None)
        if gpu
        else figure(None, "bytes", "not measured (no GPU in the server)" if values else why, None)
    )
    return out


def format_value(fig: dict) -> str:
    value, unit = fig["value"], fig["unit"]
    if value is None:
        return "not measured"
    if unit in ("pass@1", "pass rate"):
        return f"{100 * value:.1f}% ± {100 * fig['stderr']:.1f}"
    if unit == "bytes":
        return f"{value / 2**30:.2f} GiB"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "tokens/s":
        return f"{value:.1f} tokens/s"
    return f"{value} {unit}"


def report_table(report: dict) -> list[str]:
    lines = [f"ssp validate: {report['model']}", "", "| figure | value | samples | how |", "|---|---|---|---|"]
    for name, fig in report["figures"].items():
        samples = "" if fig["samples"] is None else str(fig["samples"])
        lines.append(f"| {name} | {format_value(fig)} | {samples} | {fig['how']} |")
    lines += [
        "",
        "| clients | requests | answered | 429 | errors | latency p95 | tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in report["concurrency_levels"]:
        p95 = "" if level["latency_p95"] is None else f"{level['latency_p95']:.3f} s"
        lines.append(f"| {level['clients']} | {level['requests']} | {level['answered']} | {level['rejected_429']} | "
                     f"{level['errors']} | {p95} | {level['tokens_per_second']:.1f} |")  # fmt: skip
    return lines
