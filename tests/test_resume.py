"""Resume after `kill -9`: each stage killed at several points, rerun with the same command, gives the results of a run
that was never interrupted (bitwise: the same weights, probe, selection and evaluation), redoing only the work the
kill cut short; a changed recipe is refused; `overwrite=true` keeps nothing of the earlier run."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from test_signal_run import SMALL as SMALL_RL
from test_spectrum_run import DEMO, SMALL

from ssp.resume import first_changed_key, flatten

REPO = Path(__file__).resolve().parent.parent
KILL_AT = REPO / "tests" / "scripts" / "kill_at.py"
DEMO_RL = REPO / "recipes" / "demo" / "rl.yaml"
# 6 SFT steps with a training state every 3; two RL stages of 4 and 2 steps with a state every 2.
RL_ARGS = [*SMALL_RL, "rl.save_every=2", "rl.stages=[{name: first, max_steps: 4}, {name: second, max_steps: 2}]"]


def ssp_run(counts: Path, *args: str, point: str = "none", n: int = 0) -> tuple[int, dict]:
    """`ssp ARGS` in a fresh process, SIGKILLed at the n-th `point` (tests/scripts/kill_at.py); its work counts."""
    command = [sys.executable, str(KILL_AT), point, str(n), str(counts), "--", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    if point == "none":
        assert result.returncode == 0, result.stderr[-3000:]
    return result.returncode, json.loads(counts.read_text()) if counts.is_file() else {}


def kill_and_resume(tmp_path: Path, args: list[str], point: str, n: int) -> tuple[dict, dict, str]:
    """Kill the run at `point`, then rerun the same command: (work before the kill, work of the resumed run, its
    stderr's resume lines)."""
    code, before = ssp_run(tmp_path / "killed.json", *args, point=point, n=n)
    assert code == -signal.SIGKILL, f"the run was not killed at {point} #{n} (exit {code})"
    command = [sys.executable, str(KILL_AT), "none", "0", str(tmp_path / "resumed.json"), "--", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return before, json.loads((tmp_path / "resumed.json").read_text()), result.stderr


def same_json(path_a: Path, path_b: Path, root_a: Path, root_b: Path) -> None:
    """The same JSON, once each run's own folder name is taken out of the paths it records."""
    a = path_a.read_text().replace(str(root_a), "OUT")
    b = path_b.read_text().replace(str(root_b), "OUT")
    assert json.loads(a) == json.loads(b), path_a.name


def same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].equal(second[name]), f"{a} vs {b}: {name}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs: the spectrum stage, and the signal stage on its merged model, with their work counts."""
    root = tmp_path_factory.mktemp("reference")
    _, sft_counts = ssp_run(root / "sft.json", "sft", str(DEMO), f"output_dir={root / 'sft'}", *SMALL)
    rl = ["rl", str(DEMO_RL), f"output_dir={root / 'rl'}", f"model.name_or_path={root / 'sft'}", *RL_ARGS]
    _, rl_counts = ssp_run(root / "rl.json", *rl)
    return {"sft": root / "sft", "rl": root / "rl", "sft_counts": sft_counts, "rl_counts": rl_counts}


# point, n, the work the resumed run must do (what the kill cut short, and what came after it).
SFT_KILLS = {
    # Steps 4-6 from state-3. (A kill just after that save resumes the same way, from the same state: not repeated,
    # for the suite's 20 minutes; the RL kills below cover a kill right after a save.)
    "mid-step": ("step", 5, {"step": 3, "saved": 1, "probe": 2, "merge": 1, "test": 3}),
    "mid-probing": ("probe", 2, {"probe": 1, "merge": 1, "test": 3}),  # step-3's probe is kept
    "mid-merge": ("merge", 1, {"merge": 1, "test": 3}),
    "mid-evaluation": ("test", 2, {"test": 2}),  # the base model's evaluation is kept
}


@pytest.mark.slow
@pytest.mark.parametrize("kill", list(SFT_KILLS), ids=list(SFT_KILLS))
def test_a_killed_spectrum_run_resumes_to_the_same_results(kill, reference, tmp_path):
    point, n, redone = SFT_KILLS[kill]
    out = tmp_path / "sft"
    _, resumed, stderr = kill_and_resume(tmp_path, ["sft", str(DEMO), f"output_dir={out}", *SMALL], point, n)
    assert resumed == redone
    assert f"resuming the run in {out}" in stderr
    ref = reference["sft"]
    for name in ("data.json", "probe.json", "selection.json", "eval.json", "train.json"):
        same_json(out / name, ref / name, out, ref)
    for model in ("checkpoints/step-3", "checkpoints/step-6", "spectrum"):
        same_weights(out / model, ref / model)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["README.md", "step-3", "step-6"]
    assert not list(out.rglob(".*.writing")) and not list(out.rglob("*.tmp"))
    cost = json.loads((out / "cost.json").read_text())
    assert cost["complete"] and cost["attempts"] == 2
    assert cost["tokens_trained"] == json.loads((ref / "cost.json").read_text())["tokens_trained"]


RL_KILLS = {
    # From first's state-2, right after it was written. (A kill later in step 3 resumes the same way, from the same
    # state: not repeated, for the suite's 20 minutes.)
    "after-a-state": ("saved", 1, {"step": 4, "saved": 2, "stage": 2, "rl-test": 2}),
    # The last step's save keeps no state (transformers would train past the end from it): from state-2 again.
    "after-the-last-step": ("saved", 2, {"step": 4, "saved": 2, "stage": 2, "rl-test": 2}),
    "between-stages": ("stage", 2, {"step": 2, "saved": 1, "stage": 1, "rl-test": 1}),
    "mid-evaluation": ("rl-test", 2, {"step": 2, "saved": 1, "stage": 1, "rl-test": 2}),
}


@pytest.mark.slow
@pytest.mark.parametrize("kill", list(RL_KILLS), ids=list(RL_KILLS))
def test_a_killed_signal_run_resumes_to_the_same_results(kill, reference, tmp_path):
    point, n, redone = RL_KILLS[kill]
    out = tmp_path / "rl"
    args = ["rl", str(DEMO_RL), f"output_dir={out}", f"model.name_or_path={reference['sft']}", *RL_ARGS]
    _, resumed, _ = kill_and_resume(tmp_path, args, point, n)
    assert resumed == redone
    ref = reference["rl"]
    for stage in ("first", "second"):
        same_weights(out / "stages" / stage / "model", ref / "stages" / stage / "model")
        same_json(out / "stages" / stage / "eval.json", ref / "stages" / stage / "eval.json", out, ref)
        assert not list((out / "stages" / stage / "checkpoints").glob("state-*"))  # a finished stage keeps none
        logs = [json.loads((run / "stages" / stage / "metrics.json").read_text()) for run in (out, ref)]
        assert [untimed(entry) for entry in logs[0]["log_history"]] == [untimed(e) for e in logs[1]["log_history"]]
        assert logs[0]["tokens_generated"] == logs[1]["tokens_generated"] > 0
    signal_json = [json.loads((run / "signal.json").read_text().replace(str(run), "OUT")) for run in (out, ref)]
    assert signal_json[0]["evaluations"] == signal_json[1]["evaluations"]
    assert signal_json[0]["cost"]["tokens_trained"] == signal_json[1]["cost"]["tokens_trained"]


def untimed(entry: dict) -> dict:
    """A log entry without the numbers that measure time."""
    return {k: v for k, v in entry.items() if "time" not in k and "per_second" not in k and "runtime" not in k}


@pytest.mark.slow
def test_a_finished_run_rerun_does_no_work_again(reference, tmp_path):
    ref = reference["sft"]
    _, counts = ssp_run(tmp_path / "again.json", "sft", str(DEMO), f"output_dir={ref}", *SMALL)
    assert counts == {}
    assert reference["sft_counts"] == {"step": 6, "saved": 2, "probe": 2, "test": 3, "merge": 1}


def test_resuming_with_a_changed_recipe_is_refused(tmp_path):
    out = tmp_path / "run"
    code, _ = ssp_run(tmp_path / "a.json", "sft", str(DEMO), f"output_dir={out}", *SMALL, point="step", n=2)
    assert code == -signal.SIGKILL
    before = sorted(str(p) for p in out.rglob("*"))
    result = subprocess.run(
        [sys.executable, "-m", "ssp", "sft", str(DEMO), f"output_dir={out}", *SMALL, "sft.learning_rate=1.0e-3"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # after the demo recipe's probing-budget warning
    assert "Traceback" not in result.stderr
    assert last.startswith("ssp: error: sft.learning_rate: the run in") and "was started with 0.003, now 0.001" in last
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_overwrite_keeps_nothing_of_the_earlier_run(tmp_path):
    """The case of a 4-step rerun over an interrupted longer run: only the new run's checkpoints may be selected."""
    out = tmp_path / "run"
    code, _ = ssp_run(tmp_path / "a.json", "sft", str(DEMO), f"output_dir={out}", *SMALL, point="probe", n=1)
    assert code == -signal.SIGKILL and (out / "checkpoints" / "step-6").is_dir()
    shorter = [*SMALL, "sft.max_steps=4", "sft.save_every=2", "overwrite=true"]
    ssp_run(tmp_path / "b.json", "sft", str(DEMO), f"output_dir={out}", *shorter)
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-2", "step-4"]
    assert set(json.loads((out / "probe.json").read_text())["checkpoints"]) == {"step-2", "step-4"}
    assert sorted(p.name for p in (out / "probe").iterdir()) == ["step-2.json", "step-4.json"]


def test_first_changed_key_names_the_first_difference_and_ignores_logging():
    stored = {"seed": 0, "sft": {"learning_rate": 1e-4, "logging_steps": 10}, "data": {"train": [{"path": "a"}]}}
    assert first_changed_key(stored, stored) is None
    changed = {**stored, "sft": {"learning_rate": 1e-4, "logging_steps": 1}}
    assert first_changed_key(stored, changed) is None  # logging may change on resume
    assert first_changed_key({**stored, "rl": {"report_to": []}}, {**stored, "rl": {"report_to": ["wandb"]}}) is None
    changed = {**stored, "data": {"train": [{"path": "b"}]}}
    assert first_changed_key(stored, changed) == ("data.train.0.path", "a", "b")
    changed = {**stored, "data": {"train": [{"path": "a"}, {"path": "c"}]}}
    assert first_changed_key(stored, changed) == ("data.train.1.path", "<absent>", "c")
    assert flatten({"a": {"b": [1, {"c": 2}], "d": {}}}) == {"a.b.0": 1, "a.b.1.c": 2, "a.d": {}}
