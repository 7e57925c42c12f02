"""`ssp serve` as a user runs it: a subprocess on 127.0.0.1 serving a model shaped like Qwen2.5-Math-1.5B (its
chat template, an EOS that is not the end-of-turn token, 4K context), talked to with the official `openai` client
and with raw HTTP; a bounded load test; `ssp validate --url` against it; SIGTERM with a request in flight."""

import asyncio
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from ssp.cli import main
from ssp.serve.validate import ValidateConfig, report_table, run_validate

pytestmark = pytest.mark.slow
KEY = "test-key-0123"
LIMIT = 2  # request slots


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = model.parent / f"serve-{port}.log"
    command = [sys.executable, "-m", "ssp", "serve", "--model", str(model), "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ssp serve exited {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"ssp serve did not answer /health: {log.read_text()}")


@pytest.fixture(scope="module")
def served(qwen_model_dir):
    """One server for the module; the SIGTERM test, the module's last, stops it."""
    process, url, log = start_server(
        qwen_model_dir, "--api-key", KEY, "--max-concurrent-requests", str(LIMIT), "--served-model-name", "qwen-like",
        "--max-request-bytes", "40000",
    )  # fmt: skip
    yield process, url, log
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def server(served):
    return served[1]


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


MESSAGES = [{"role": "user", "content": "Let's think step by step and output the final answer within \\boxed{}."}]


def in_flight(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics").text
    return next(float(line.split()[1]) for line in metrics.splitlines() if line.startswith("ssp_requests_in_flight "))


def test_models_lists_the_model_and_a_name_per_preset(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["qwen-like", "qwen-like:recommended", "qwen-like:mathematical_reasoning",
                   "qwen-like:code_generation", "qwen-like:creative_problem_solving"]  # fmt: skip


def test_chat_completion_with_the_openai_client(client):
    response = client.chat.completions.create(model="qwen-like", messages=MESSAGES, max_tokens=12, seed=1)
    choice = response.choices[0]
    assert response.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length") and isinstance(choice.message.content, str)
    assert 1 <= response.usage.completion_tokens <= 12 and response.usage.prompt_tokens > 10
    assert "<|im_end|>" not in choice.message.content  # the end of turn stops it; special tokens are not text


def test_streaming_sends_the_same_text_as_a_whole_response_with_the_same_seed(client):
    whole = client.chat.completions.create(model="qwen-like", messages=MESSAGES, max_tokens=16, seed=5)
    chunks = list(client.chat.completions.create(model="qwen-like", messages=MESSAGES, max_tokens=16, seed=5,
                                                 stream=True, stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == whole.choices[0].message.content
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len(chunks) > 3  # streamed token by token, not sent at the end


def test_n_samples_and_a_text_completion(client):
    response = client.chat.completions.create(model="qwen-like", messages=MESSAGES, max_tokens=8, n=3, seed=2)
    assert [c.index for c in response.choices] == [0, 1, 2]
    completion = client.completions.create(model="qwen-like", prompt="The answer is", max_tokens=6, seed=0)
    assert completion.object == "text_completion" and completion.usage.completion_tokens <= 6
    streamed = list(client.completions.create(model="qwen-like", prompt="The answer is", max_tokens=6, seed=0,
                                              stream=True))  # fmt: skip
    assert "".join(c.choices[0].text for c in streamed) == completion.choices[0].text


def test_presets_by_model_name_and_field_and_the_reasoning_cap(client):
    by_name = client.chat.completions.create(model="qwen-like:code_generation", messages=MESSAGES, max_tokens=6)
    assert by_name.model == "qwen-like:code_generation"
    capped = client.chat.completions.create(model="qwen-like", messages=MESSAGES, max_tokens=40, seed=3,
                                            extra_body={"preset": "creative_problem_solving",
                                                        "max_thinking_tokens": 4})  # fmt: skip
    assert capped.choices[0].finish_reason == "thinking_length"  # a random model never closes </think>
    assert capped.usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError, match="preset: unknown preset 'fastest'"):
        client.chat.completions.create(model="qwen-like", messages=MESSAGES, extra_body={"preset": "fastest"})


def test_a_wrong_or_missing_key_is_refused_and_health_needs_none(server):
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid or missing API key"):
        wrong.chat.completions.create(model="qwen-like", messages=MESSAGES)
    assert httpx.get(f"{server}/v1/models").status_code == 401
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"messages": [', 400, "the body is not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature: Input should"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}', 400,
         "max_tokens: 5000 is over this server's limit of 4096 tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "preset": "nope"}', 400, "preset: unknown preset 'nope'"),
        (b'{"messages": [{"role": "user", "content": "x"}], "logprobs": true}', 400, "logprobs: not supported"),
        (b'{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', 404, "model: 'gpt-4' is not served"),
        (json.dumps({"messages": [{"role": "user", "content": "x " * 25000}]}).encode(), 413, "the body is over"),
        (json.dumps({"messages": [{"role": "user", "content": "step " * 6000}]}).encode(), 400,
         "messages: the prompt is"),
    ],
)  # fmt: skip
def test_malformed_requests_get_a_4xx_naming_the_field(server, body, status, message):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{server}/v1/chat/completions", content=body, headers=headers, timeout=60)
    assert response.status_code == status
    assert response.json()["error"]["message"].startswith(message), response.text


async def one_request(client: httpx.AsyncClient, index: int) -> dict:
    body = {"messages": MESSAGES, "max_tokens": 24, "stream": True, "seed": index}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line async for line in response.aiter_lines() if line]
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    return {
        "status": response.status_code,
        "retry_after": response.headers.get("retry-after"),
        "ids": {c["id"] for c in chunks},
        "done": lines.count("data: [DONE]"),
        "finishes": sum(1 for c in chunks for ch in c["choices"] if ch["finish_reason"]),
    }


def test_load_loses_no_request_answers_none_twice_and_429s_at_the_limit(server):
    async def load():
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=server, headers=headers, timeout=120) as client:
            return await asyncio.gather(*(one_request(client, i) for i in range(4 * LIMIT)))

    results = asyncio.run(load())
    answered = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 429]
    assert len(answered) + len(refused) == len(results)  # every request got one answer: a stream or a 429
    assert refused and all(r["retry_after"] == "1" for r in refused)
    assert len(answered) >= LIMIT
    assert all(r["done"] == 1 and r["finishes"] == 1 and len(r["ids"]) == 1 for r in answered)
    assert len({i for r in answered for i in r["ids"]}) == len(answered)  # no response twice
    assert in_flight(server) == 0


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"messages": MESSAGES, "max_tokens": 3000, "stream": True, "max_thinking_tokens": 3000}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # the first chunk, then hang up
    deadline = time.monotonic() + 30
    while in_flight(server) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_flight(server) == 0
    ok = httpx.post(f"{server}/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 4}, headers=headers,
                    timeout=60)  # fmt: skip
    assert ok.status_code == 200


def test_validate_against_the_url_measures_every_figure(server, tmp_path, shared_data):
    config = ValidateConfig(
        url=server, api_key=KEY, data_dir=str(shared_data), math_limit=2, code_benchmark="none", max_tokens=8,
        latency_requests=3, latency_tokens=8, max_concurrency=4, requests_per_client=1, out=str(tmp_path),
    )  # fmt: skip
    report = run_validate(config)
    figures = report["figures"]
    assert figures["math_accuracy"]["samples"] == 2 and 0 <= figures["math_accuracy"]["value"] <= 1
    assert figures["code_accuracy"]["value"] is None and "--code-benchmark none" in figures["code_accuracy"]["how"]
    assert 0 < figures["first_token_p50"]["value"] <= figures["latency_p95"]["value"]
    assert figures["tokens_per_second"]["value"] > 0
    # The server has 2 slots: 4 clients at once get 429s, so 2 is what it holds.
    assert figures["concurrency_held"]["value"] == LIMIT
    assert report["concurrency_levels"][-1]["rejected_429"] > 0
    assert figures["peak_memory_cpu"]["value"] > 0 and figures["peak_memory_gpu"]["value"] is None
    assert json.loads((tmp_path / "validate.json").read_text())["figures"] == figures
    table = "\n".join(report_table(report))
    assert "| concurrency_held | 2 clients |" in table and "not measured" in table


def test_serve_refuses_a_missing_model_in_one_line(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"ssp: error: --model: model folder not found: {tmp_path / 'nope'}\n"
    assert main(["validate", "--url", "http://127.0.0.1:1", "--math-limit", "0"]) == 2
    assert capsys.readouterr().err == "ssp: error: --math-limit: must be at least 1, got 0\n"


# Stops the module's server: keep it the last test that uses `served`.
def test_sigterm_finishes_the_request_in_flight(served):
    process, url, log = served
    body = {"messages": MESSAGES, "max_tokens": 200, "stream": True, "max_thinking_tokens": 200}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        process.send_signal(signal.SIGTERM)
        rest = list(lines)
    assert "data: [DONE]" in rest
    chunks = [json.loads(line[6:]) for line in rest if line.startswith("data: {")]
    assert len(chunks) > 2 and chunks[-1]["choices"][0]["finish_reason"] is not None  # it ran on to its end
    assert process.wait(60) == 0, log.read_text()
    assert "ssp serve: stopped" in log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make test-vllm)")
def test_the_vllm_engine_serves_streams_and_caps_reasoning(qwen_model_dir):
    args = ("--backend", "vllm", "--dtype", "float32", "--max-model-len", "512")
    process, url, log = start_server(qwen_model_dir, *args)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        assert httpx.get(f"{url}/health").json()["engine"] == "vllm"
        whole = client.chat.completions.create(model="model", messages=MESSAGES, max_tokens=12, n=2)
        assert [c.index for c in whole.choices] == [0, 1] and whole.usage.completion_tokens <= 24
        chunks = list(client.chat.completions.create(model="model", messages=MESSAGES, max_tokens=20, stream=True))
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        capped = client.chat.completions.create(model="model", messages=MESSAGES, max_tokens=40,
                                                extra_body={"max_thinking_tokens": 3})  # fmt: skip
        assert capped.choices[0].finish_reason == "thinking_length" and capped.usage.completion_tokens == 3
    finally:
        process.terminate()
        process.wait(120)
