"""Serving a trained model behind an OpenAI-compatible API (`ssp serve`) and measuring it (`ssp validate`);
docs/serving.md.

- protocol.py: the requests (pydantic, strict) and the sampling each one resolves to (presets, overrides).
- text.py: one sequence's text as its tokens arrive (stop strings, budget, reasoning-length cap).
- engines.py: the token streams: transformers (CPU or GPU, one request at a time) or vLLM's AsyncLLM.
- app.py: the FastAPI app (auth, size and concurrency limits, SSE streaming, Prometheus metrics).
- server.py: `run_serve(settings)`: load, bind, serve until SIGTERM/Ctrl-C, finishing in-flight requests.
- validate.py: `run_validate(settings)`: accuracy, pass rate, latencies, tokens/s, memory and concurrency, measured.
"""
