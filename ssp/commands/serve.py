"""`ssp serve` and `ssp validate`: a trained model behind an OpenAI-compatible API, and its measured figures
(docs/serving.md)."""

from __future__ import annotations

from ssp.generation.backends import BACKENDS
from ssp.serve.protocol import SERVING_PRESETS
from ssp.serve.server import API_KEY_ENV, ServeConfig, run_serve
from ssp.serve.validate import add_validate_arguments, run_validate_command


def add_arguments(parser, command: str) -> None:
    if command == "serve":
        parser.add_argument("--model", required=True, help="a model folder, e.g. runs/demo/rl/stages/main/model")
        parser.add_argument(
            "--host", default="127.0.0.1", help="(default: loopback only; 0.0.0.0 for every interface)"
        )
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--api-key", help=f"required on every /v1 request (default: ${API_KEY_ENV}; unset: none)")
        parser.add_argument("--served-model-name", help="the id /v1/models lists (default: the folder's name)")
        parser.add_argument(
            "--backend", choices=BACKENDS, default="auto", help="auto: vLLM when importable with a GPU"
        )
        parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
        parser.add_argument(
            "--max-model-len", type=int, help="context limit, prompt + response (default: the model's)"
        )
        parser.add_argument("--preset", choices=SERVING_PRESETS, default="recommended", help="the default sampling")
        parser.add_argument("--temperature", type=float, help="the default temperature (overrides the preset's)")
        parser.add_argument("--top-p", type=float, help="the default top_p (overrides the preset's)")
        parser.add_argument("--max-tokens", type=int, help="the default budget of a request (the preset's otherwise)")
        parser.add_argument(
            "--max-thinking-tokens", type=int,
            help="end a response still reasoning (no </think> yet) after this many tokens: finish_reason "
            "thinking_length",
        )  # fmt: skip
        parser.add_argument("--max-concurrent-requests", type=int, default=8, help="running + waiting; more get 429")
        parser.add_argument("--max-request-bytes", type=int, default=1 << 20, help="larger bodies get 413")
        parser.add_argument("--shutdown-timeout", type=float, default=120.0, help="seconds SIGTERM waits for requests")
        return
    add_validate_arguments(parser)


def run(args) -> int:
    if args.command == "serve":
        config = ServeConfig(**{k: v for k, v in vars(args).items() if k != "command"})
        run_serve(config)
        return 0
    return run_validate_command(args)
