import json

import pytest

from ssp.config import CostConfig, RecipeError
from ssp.cost import CostMeter, detect_device, device_cost, resolve_price


def test_cpu_is_detected_and_priced(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert detect_device() == ("cpu", 1)
    assert resolve_price(CostConfig()) == ("cpu", 1, 0.1)
    # a CPU launch counts machines, not processes: 2 machines of 1 process, then 1 machine of 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert detect_device() == ("cpu", 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert detect_device() == ("cpu", 1)


def test_explicit_device_type_uses_its_price():
    assert resolve_price(CostConfig(device_type="H800")) == ("H800", 1, 2.0)


def test_unpriced_device_is_an_error_naming_the_key():
    with pytest.raises(RecipeError, match=r"cost.prices: no price for device 'TPU'; add cost.prices.TPU=USD"):
        resolve_price(CostConfig(device_type="TPU"))


def test_summary_arithmetic(tmp_path):
    meter = CostMeter("A100", 8, 1.2)
    meter.started -= 1800.0  # pretend the stage began half an hour ago
    meter.phases["train"] = 1000.0
    meter.add_training(tokens=1_000_000, parameters=1_500_000_000)
    meter.tokens_generated = 42
    summary = meter.record(tmp_path / "cost.json")
    assert summary["device_hours"] == pytest.approx(8 * 0.5, rel=1e-3)
    assert summary["dollars"] == pytest.approx(8 * 0.5 * 1.2, rel=1e-3)
    assert summary["train_flops_estimate"] == 6 * 1.5e9 * 1e6
    assert summary["mfu_estimate"] == pytest.approx(9e15 / (1000 * 8 * 312e12))
    assert json.loads((tmp_path / "cost.json").read_text())["tokens_generated"] == 42


def test_phase_timer_accumulates():
    meter = CostMeter("cpu", 1, 0.1)
    with meter.phase("probe"):
        pass
    with meter.phase("probe"):
        pass
    assert set(meter.phases) == {"probe"} and meter.phases["probe"] >= 0
    assert meter.summary()["mfu_estimate"] is None  # no peak FLOP/s known for a CPU


def test_the_signal_stage_mfu_counts_every_curriculum_stage_and_generation_flops_are_recorded():
    meter = CostMeter("H100", 8, 2.5)
    meter.phases.update({"train:math-16k": 600.0, "train:code": 400.0, "eval:code": 50.0, "eval": 30.0})
    meter.add_training(tokens=2_000_000, parameters=1_500_000_000)
    meter.add_generation(tokens=3_000_000, parameters=1_500_000_000)
    summary = meter.summary()
    # training FLOPs over the training phases only (1,000 s), not the evaluations
    assert summary["mfu_estimate"] == pytest.approx(6 * 1.5e9 * 2e6 / (1000 * 8 * 989e12))
    assert summary["generation_flops_estimate"] == 2 * 1.5e9 * 3e6 and summary["tokens_generated"] == 3_000_000


def test_device_cost_is_the_meters_arithmetic():
    assert device_cost(1800.0, 8, 1.2) == (1800.0 / 3600 * 8, 1800.0 / 3600 * 8 * 1.2)
    meter = CostMeter("A100", 8, 1.2)
    summary = meter.summary()
    assert (summary["device_hours"], summary["dollars"]) == device_cost(summary["wall_seconds"], 8, 1.2)
