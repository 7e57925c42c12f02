"""`ssp merge`: the weighted parameter average of model folders (`ssp.spectrum.fusion`)."""

from __future__ import annotations

from ssp.spectrum.fusion import merge_models


def add_arguments(parser, command: str) -> None:
    parser.add_argument("models", nargs="+", help="model folders with safetensors weights")
    parser.add_argument("--out", required=True, help="output model folder (an earlier model there is replaced)")
    parser.add_argument("--weights", type=float, nargs="+", help="one weight per model (default: uniform)")


def run(args) -> int:
    merge_models(args.models, args.weights, args.out)
    print(f"merged {len(args.models)} models into {args.out}")
    return 0
