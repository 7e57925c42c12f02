"""`run_serve(config)`: load a model, bind, and serve the API until SIGTERM or Ctrl-C.

uvicorn does the HTTP and the graceful shutdown: on SIGTERM it stops accepting connections and waits for the
in-flight requests (streams included) to finish, for at most `shutdown_timeout` seconds, before it exits.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ssp.config import RecipeError
from ssp.generation.presets import resolve_sampling
from ssp.recipe_checks import check_model_path
from ssp.serve.app import ServeSettings, build_app
from ssp.serve.engines import get_engine
from ssp.serve.protocol import SERVING_PRESETS

API_KEY_ENV = "SSP_API_KEY"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class ServeConfig:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None  # default: the model folder's name
    api_key: str | None = None  # default: $SSP_API_KEY
    backend: str = "auto"
    dtype: str = "auto"
    max_model_len: int | None = None  # default: the model's context
    preset: str = "recommended"
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None  # the default budget of a request without max_tokens
    max_thinking_tokens: int | None = None
    max_concurrent_requests: int = 8
    max_request_bytes: int = 1 << 20
    shutdown_timeout: float = 120.0


def check_serve_config(config: ServeConfig) -> ServeSettings:
    """Every argument checked, and the app's settings, before the model loads."""
    check_model_path(config.model, "--model", require_config=True)
    if config.preset not in SERVING_PRESETS:
        raise RecipeError(f"--preset: unknown preset {config.preset!r} (known: {', '.join(SERVING_PRESETS)})")
    for name in ("max_concurrent_requests", "max_request_bytes", "max_thinking_tokens", "max_model_len", "max_tokens"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise RecipeError(f"--{name.replace('_', '-')}: must be at least 1, got {value}")
    if not 0 < config.port < 65536:
        raise RecipeError(f"--port: {config.port} is not a TCP port")
    default = resolve_sampling(
        config.preset, n=1, temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_tokens
    )
    api_key = config.api_key if config.api_key is not None else os.environ.get(API_KEY_ENV) or None
    return ServeSettings(
        model_name=config.served_model_name or Path(config.model).expanduser().resolve().name,
        default_sampling=default,
        default_preset=config.preset,
        api_key=api_key,
        max_concurrent_requests=config.max_concurrent_requests,
        max_request_bytes=config.max_request_bytes,
        max_thinking_tokens=config.max_thinking_tokens,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(config: ServeConfig) -> None:
    settings = check_serve_config(config)
    if not is_loopback(config.host) and settings.api_key is None:
        print(f"warning: serving on {config.host} without an API key: anyone who reaches the port can use it "
              f"(--api-key or ${API_KEY_ENV})", file=sys.stderr)  # fmt: skip
    engine = get_engine(config.model, config.backend, dtype=config.dtype, max_model_len=config.max_model_len)
    app = build_app(engine, settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            timeout_graceful_shutdown=config.shutdown_timeout,
            log_level="warning",
            access_log=False,
        )
    )
    auth = "an API key" if settings.api_key else "no API key"
    print(f"ssp serve: {settings.model_name} ({engine.name}, context {engine.context}) on "
          f"http://{config.host}:{config.port}/v1 with {auth}; "
          f"{settings.max_concurrent_requests} request slots", flush=True)  # fmt: skip
    # uvicorn hands the signal that stopped it on to the handler it found, once every request has finished: a
    # handler that only notes it makes a graceful stop exit 0 (docker stop, Ctrl-C) instead of dying by the signal.
    stopped_by = []
    previous = {s: signal.signal(s, lambda number, frame: stopped_by.append(number)) for s in STOP_SIGNALS}
    try:
        server.run()
    finally:
        engine.close()
        for number, handler in previous.items():
            signal.signal(number, handler)
    how = f" by {signal.Signals(stopped_by[0]).name}" if stopped_by else ""
    print(f"ssp serve: stopped{how}, in-flight requests finished", flush=True)
