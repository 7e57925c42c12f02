"""The requests `ssp serve` accepts, as pydantic models (OpenAI's field names), and the sampling each one resolves to.

Validation is strict: a wrong type (`"temperature": "hot"`, `"n": 1.5`, `"stream": "yes"`) is an error, not a
coercion, and every error names its field. Fields OpenAI clients send that change nothing here (`user`,
`frequency_penalty` at 0, ...) are ignored; fields whose meaning this server does not implement (`logprobs`,
`tools`, `echo`, ...) are refused when set, instead of being silently dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ssp.config import RecipeError, SamplingConfig
from ssp.generation.presets import resolve_sampling

# The presets a request may name: the recommended configuration (the default) and the task presets. The evaluation
# protocols (`math`: 64 samples, `code`: 8) are `ssp eval`'s, not a server's.
SERVING_PRESETS = ("recommended", "mathematical_reasoning", "code_generation", "creative_problem_solving")
MAX_N = 16  # samples per request
MAX_STOP = 4  # stop strings per request, as OpenAI's API
# Set to anything but these values, each field asks for something this server does not do.
UNSUPPORTED = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "logit_bias": (None, {}),
    "response_format": (None, {"type": "text"}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
}
THINKING_LENGTH = "thinking_length"  # finish_reason of a response cut by the reasoning-length cap


class RequestError(Exception):
    """A request this server refuses: HTTP `status`, a message naming the field `param`."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampled(_Strict):
    model_config = ConfigDict(strict=True, extra="allow")  # extras are checked against UNSUPPORTED, then ignored

    model: str | None = None
    preset: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)  # 0: off (vLLM's extension of the API)
    repetition_penalty: float | None = Field(None, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    max_thinking_tokens: int | None = Field(None, ge=1)  # a lower reasoning-length cap than the server's

    def refuse_unsupported(self) -> None:
        for name, value in (self.model_extra or {}).items():
            if name in UNSUPPORTED and value not in UNSUPPORTED[name]:
                raise RequestError(400, f"{name}: not supported by this server", name)

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP:
            raise RequestError(400, f"stop: at most {MAX_STOP} strings, got {len(stops)}", "stop")
        if any(not s for s in stops):
            raise RequestError(400, "stop: an empty string would stop before the first token", "stop")
        return stops


class ChatRequest(_Sampled):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens

    def conversation(self) -> list[dict]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]

    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampled):
    prompt: str | list[str]

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise RequestError(400, f"prompt: one prompt per request, got {len(self.prompt)}", "prompt")
        return self.prompt[0]

    def token_budget(self) -> int | None:
        return self.max_tokens


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One line naming the field of pydantic's first error (FastAPI's `RequestValidationError.errors()`), and
    that field's dotted name."""
    error = errors[0]
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})", None
    field = ".".join(location) or None
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if field is None:
        return f"the body: {message}", None
    return f"{field}: {message}", field


def split_model_name(requested: str | None, served: str) -> str | None:
    """The preset a `model` name asks for (`<served>:<preset>`), None for the plain name; a model this server does
    not serve is a 404."""
    if requested is None or requested == served:
        return None
    name, _, preset = requested.rpartition(":")
    if name != served or not preset:
        raise RequestError(404, f"model: {requested!r} is not served here (GET /v1/models lists {served!r})", "model")
    return preset


def request_sampling(request: _Sampled, served: str, default: SamplingConfig, default_preset: str) -> SamplingConfig:
    """The sampling of a request: its preset (the `preset` field or a model-name suffix; else the server's
    defaults) with the request's own fields on top. `max_new_tokens` is the preset's budget or `max_tokens`,
    before the context clips it."""
    suffix = split_model_name(request.model, served)
    if request.preset is not None and suffix is not None and request.preset != suffix:
        raise RequestError(400, f"preset: {request.preset!r} contradicts the model name's {suffix!r}", "preset")
    preset = request.preset or suffix
    if preset is not None and preset not in SERVING_PRESETS:
        raise RequestError(400, f"preset: unknown preset {preset!r} (known: {', '.join(SERVING_PRESETS)})", "preset")
    overrides = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "repetition_penalty": request.repetition_penalty,
        "max_new_tokens": request.token_budget(),
    }
    try:
        if preset is None or preset == default_preset:
            base = default
        else:
            base = resolve_sampling(preset)
        sampling = dataclasses.replace(base, n=request.n, **{k: v for k, v in overrides.items() if v is not None})
    except RecipeError as exc:
        raise RequestError(400, str(exc)) from None
    return sampling
