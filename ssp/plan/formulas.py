"""The numbers `ssp plan` computes with: devices, model shapes, and the FLOPs, memory and time formulas
(docs/plan.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

GIB = 2**30
HEADROOM_GIB = 3.0  # CUDA context, NCCL buffers, allocator fragmentation
# Chunked log-probabilities (TRL's fused LM head): tiles of 4,096 tokens x 32,768 vocabulary entries in fp32, with
# the tile's gradient and the running statistics.
LOGPROB_TILE_GIB = 3 * 4096 * 32768 * 4 / GIB
CHARS_PER_TOKEN = 3.5  # English and LaTeX with a Qwen2-style BPE, for data sizes read from files


@dataclass(frozen=True)
class Device:
    memory_gib: float
    peak_tflops: float  # dense bf16
    bandwidth_tbps: float  # HBM, TB/s
    price_key: str  # the key of `cost.prices`


DEVICES = {
    "A100-80GB": Device(80.0, 312.0, 2.0, "A100"),
    "A100-40GB": Device(40.0, 312.0, 1.6, "A100"),
    "H100": Device(80.0, 989.0, 3.35, "H100"),
    "H800": Device(80.0, 989.0, 3.35, "H800"),
    "H200": Device(140.0, 989.0, 4.8, "H200"),
}


@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    head_dim: int = 0  # 0: hidden_size / num_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def parameters(self) -> int:
        """Embedding, LM head (unless tied), and per layer: q/k/v with biases (Qwen2), o, the gated MLP, 2 norms."""
        q, kv = self.num_heads * self.head_size, self.num_kv_heads * self.head_size
        attention = self.hidden_size * (q + 2 * kv) + (q + 2 * kv) + q * self.hidden_size
        mlp = 3 * self.hidden_size * self.intermediate_size
        embedding = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return embedding + self.num_layers * (attention + mlp + 2 * self.hidden_size) + self.hidden_size

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_size * 2  # keys and values, bf16

    def activation_bytes_per_token(self, checkpointing: bool) -> float:
        """bf16 tensors kept for the backward pass: per layer the norms' outputs, q, k, v, the attention output,
        and the MLP's gate, up, product and down input; with checkpointing only each layer's input is kept and one
        layer is recomputed at a time."""
        kv = self.num_kv_heads * self.head_size
        per_layer = 2 * (5 * self.hidden_size + 2 * kv + 4 * self.intermediate_size)
        if checkpointing:
            return self.num_layers * 2 * self.hidden_size + per_layer
        return self.num_layers * per_layer


KNOWN_ARCHITECTURES = {
    # config.json of the hub checkpoints, for planning without the hub.
    "Qwen/Qwen2.5-Math-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True, 4096),
    "Qwen/Qwen2.5-Math-7B": Architecture(3584, 28, 28, 4, 18944, 152064, False, 4096),
    "Qwen/Qwen2.5-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True, 131072),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, False, 131072),
}


def architecture_from_config(config: dict) -> Architecture:
    return Architecture(
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=config.get("max_position_embeddings", 0),
        head_dim=config.get("head_dim") or 0,
    )


def find_architecture(name_or_path: str, planned_outputs: dict[str, Architecture]) -> Architecture | None:
    """A model folder's config, a run folder an earlier recipe of this plan writes, a spectrum run's base model,
    the local hub cache, or `KNOWN_ARCHITECTURES`; None if none of them knows the model."""
    path = Path(name_or_path).expanduser()
    resolved = str(path.resolve())
    if resolved in planned_outputs:
        return planned_outputs[resolved]
    for folder in (path, path / "spectrum", path / "base"):
        if (folder / "config.json").is_file():
            return architecture_from_config(json.loads((folder / "config.json").read_text()))
    if name_or_path in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[name_or_path]
    try:
        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a valid repo id, or no cache
        cached = None
    if isinstance(cached, str):
        return architecture_from_config(json.loads(Path(cached).read_text()))
    return None


@dataclass
class Assumptions:
    """What the plan cannot read from the recipe; every one is printed with the plan."""

    device: str = "A100-80GB"
    gpus: int = 8
    zero_stage: int = 2  # the DeepSpeed ZeRO stage of the launch (configs/accelerate/zero2.yaml)
    offload_optimizer: bool = False
    train_mfu: float = 0.35
    vllm_generation_mfu: float = 0.10
    transformers_generation_mfu: float = 0.02
    bandwidth_efficiency: float = 0.5  # share of HBM bandwidth decoding reaches (weights and KV cache reads)
    completion_fill: float = 0.5  # mean generated length as a fraction of the token budget
    prompt_tokens: int = 300  # mean prompt length when the data is not on disk
    sft_examples: int = 100_000  # SFT examples when the data is not on disk
    sft_fill: float = 0.5  # mean SFT example length as a fraction of sft.max_length, when the data is not on disk
    problems: int = 500  # problems of a probing or test source that is not on disk (MATH-500's size)


def training_flops(arch: Architecture, tokens: float, sequence: float) -> float:
    d_attn = arch.num_heads * arch.head_size
    return tokens * (6.0 * arch.parameters + 6.0 * arch.num_layers * d_attn * sequence / 2)


def generation_flops(arch: Architecture, tokens: float, prompt: float, completion: float) -> float:
    d_attn = arch.num_heads * arch.head_size
    return tokens * (2.0 * arch.parameters + 4.0 * arch.num_layers * d_attn * (prompt + completion / 2))


def training_states_gib(arch: Architecture, assumptions: Assumptions) -> dict[str, float]:
    """bf16 weights and gradients, fp32 Adam states (12 bytes a parameter), split over the GPUs by ZeRO stage."""
    n, g, stage = arch.parameters, assumptions.gpus, assumptions.zero_stage
    weights = 2 * n / (g if stage >= 3 else 1)
    gradients = 2 * n / (g if stage >= 2 else 1)
    optimizer = 0.0 if assumptions.offload_optimizer else 12 * n / (g if stage >= 1 else 1)
    return {"weights": weights / GIB, "gradients": gradients / GIB, "optimizer": optimizer / GIB}


def activations_gib(arch: Architecture, sequences: int, length: float, checkpointing: bool) -> dict[str, float]:
    per_token = arch.activation_bytes_per_token(checkpointing)
    return {"activations": sequences * length * per_token / GIB, "log-prob tiles": LOGPROB_TILE_GIB}


def time_hours(flops: float, assumptions: Assumptions, mfu: float) -> float:
    """Device-hours: FLOPs over every GPU's share of peak at the stated MFU, times the GPUs."""
    device = DEVICES[assumptions.device]
    seconds = flops / (assumptions.gpus * device.peak_tflops * 1e12 * mfu)
    return seconds / 3600 * assumptions.gpus


def generation_hours(
    arch: Architecture, tokens: float, prompt: float, completion: float, concurrent: int, assumptions, vllm: bool
) -> float:
    """Device-hours of decoding: the slower of compute (FLOPs at the generation MFU) and memory traffic (each step
    reads the weights once for all `concurrent` sequences and every sequence's KV cache so far)."""
    mfu = assumptions.vllm_generation_mfu if vllm else assumptions.transformers_generation_mfu
    compute = time_hours(generation_flops(arch, tokens, prompt, completion), assumptions, mfu)
    per_token = 2 * arch.parameters / max(concurrent, 1) + arch.kv_bytes_per_token * (prompt + completion / 2)
    device = DEVICES[assumptions.device]
    seconds = tokens * per_token / (assumptions.gpus * device.bandwidth_tbps * 1e12 * assumptions.bandwidth_efficiency)
    return max(compute, seconds / 3600 * assumptions.gpus)
