"""What a stage costs: wall time per phase, device-hours, dollars, tokens, and a FLOPs/MFU estimate."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ssp.config import CostConfig, RecipeError
from ssp.files import read_json, write_json

# Dense bf16 peak TFLOP/s per device (no sparsity), for the MFU estimate.
PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0, "H800": 989.0, "H200": 989.0}
KNOWN_GPUS = ("A100", "H100", "H800", "H200", "A10G", "L40S", "L4", "V100", "RTX")


def detect_device() -> tuple[str, int]:
    """(device type, devices in this run). GPUs count one per process; CPUs one per machine of the launch."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0).upper()
        device_type = next((g for g in KNOWN_GPUS if g in name), name)
        return device_type, int(os.environ.get("WORLD_SIZE", "1"))
    world, per_machine = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return "cpu", max(1, world // max(1, per_machine))


def resolve_price(cost: CostConfig) -> tuple[str, int, float]:
    """Device type, count and USD per device-hour; an unpriced device is an error before any work starts."""
    detected, count = detect_device()
    device_type = detected if cost.device_type == "auto" else cost.device_type
    if device_type not in cost.prices:
        raise RecipeError(f"cost.prices: no price for device {device_type!r}; add cost.prices.{device_type}=USD")
    return device_type, count, cost.prices[device_type]


def device_cost(seconds: float, device_count: int, price_per_device_hour: float) -> tuple[float, float]:
    """(device-hours, dollars) of `seconds` of wall time on `device_count` devices."""
    device_hours = seconds / 3600 * device_count
    return device_hours, device_hours * price_per_device_hour


@dataclass
class CostMeter:
    """Wall-clock time by phase and tokens, turned into device-hours and dollars by `record`."""

    device_type: str
    device_count: int
    price_per_device_hour: float
    started: float = field(default_factory=time.perf_counter)
    phases: dict[str, float] = field(default_factory=dict)
    processes: int = 1
    distributed_type: str = "NO"
    tokens_trained: int = 0
    tokens_generated: int = 0
    train_flops: float = 0.0
    generation_flops: float = 0.0
    parameters: int = 0  # of the model being trained, for the FLOPs estimates
    # A resumed run: the time earlier attempts recorded (their phases are in `phases`), and where to keep the ledger.
    earlier_wall: float = 0.0
    attempts: int = 1
    ledger: Path | None = None
    open_phases: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cost: CostConfig) -> CostMeter:
        return cls(*resolve_price(cost))

    def resume(self, ledger: str | Path) -> None:
        """Keep the time ledger at `ledger` (the run's cost.json, written after every phase and training save) and
        start from what earlier, interrupted attempts recorded there. Tokens are not taken from it: each stage adds
        those of the work it finds done. Time an attempt spent after its last save is lost with it, not counted."""
        self.ledger = Path(ledger)
        if self.ledger.is_file():
            earlier = read_json(self.ledger)
            self.earlier_wall = earlier["wall_seconds"]
            self.phases = dict(earlier["phases_seconds"])
            self.attempts = earlier.get("attempts", 1) + 1

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        self.open_phases[name] = start
        try:
            yield
        finally:
            del self.open_phases[name]
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start
            self.save()

    def save(self) -> None:
        """The ledger so far (`complete: false`), so an attempt killed later keeps the time it spent until now."""
        if self.ledger is not None:
            write_json(self.ledger, {**self.summary(), "complete": False})

    def add_training(self, tokens: int, parameters: int) -> None:
        """Training tokens; FLOPs by the usual 6 * parameters * tokens estimate (forward and backward)."""
        self.tokens_trained += tokens
        self.train_flops += 6.0 * parameters * tokens

    def add_generation(self, tokens: int, parameters: int) -> None:
        """Generated tokens; FLOPs by 2 * parameters * tokens (one forward pass per token, attention not counted)."""
        self.tokens_generated += tokens
        self.generation_flops += 2.0 * parameters * tokens

    def summary(self) -> dict:
        now = time.perf_counter()
        wall = round(self.earlier_wall + now - self.started, 3)
        phases = dict(self.phases)
        for name, start in self.open_phases.items():
            phases[name] = phases.get(name, 0.0) + now - start
        device_hours, dollars = device_cost(wall, self.device_count, self.price_per_device_hour)
        peak = PEAK_TFLOPS.get(self.device_type)
        # `train` in the spectrum stage, `train:<stage>` for each curriculum stage of the signal stage.
        train_seconds = sum(seconds for name, seconds in phases.items() if name.split(":")[0] == "train")
        mfu = None
        if peak and train_seconds > 0:
            mfu = self.train_flops / (train_seconds * self.device_count * peak * 1e12)
        return {
            "wall_seconds": wall,
            "phases_seconds": {k: round(v, 3) for k, v in phases.items()},
            "attempts": self.attempts,
            "device_type": self.device_type,
            "device_count": self.device_count,
            "processes": self.processes,
            "distributed_type": self.distributed_type,
            "device_hours": device_hours,
            "price_per_device_hour": self.price_per_device_hour,
            "dollars": dollars,
            "tokens_trained": self.tokens_trained,
            "tokens_generated": self.tokens_generated,
            "train_flops_estimate": self.train_flops,
            "generation_flops_estimate": self.generation_flops,
            "mfu_estimate": mfu,
        }

    def record(self, path: str | Path) -> dict:
        summary = {**self.summary(), "complete": True}
        write_json(path, summary)
        return summary
