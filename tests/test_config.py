import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssp.cli import main
from ssp.coerce import from_dict
from ssp.config import Recipe, RecipeError, load_recipe
from ssp.signal.curriculum import resolve_stages

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "sft.yaml"


def write(tmp_path, data) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_demo_recipe_loads_with_overrides(tmp_path):
    recipe = load_recipe(
        DEMO,
        [
            f"output_dir={tmp_path / 'x'}",
            "sft.max_steps=50",
            "probe.ks=[1, 2]",
            "fusion.k=2",
            "sft.learning_rate=1e-4",
            "data.train.0.limit=5",
        ],
    )
    assert recipe.output_dir == str(tmp_path / "x")
    assert recipe.sft.max_steps == 50
    assert recipe.probe.ks == [1, 2]
    assert recipe.sft.learning_rate == pytest.approx(1e-4)  # YAML reads 1e-4 as a string; coerced to float
    assert recipe.data.train[0].limit == 5
    assert recipe.model.tiny.hidden_size == 128


def test_defaults_fill_missing_sections(tmp_path):
    recipe = load_recipe(write(tmp_path, {"output_dir": "runs/a"}))
    assert recipe.sft.save_every == 100
    assert recipe.fusion.metric == "pass@k"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"output_dir": "a", "sft": {"max_stepz": 3}}, "unknown key sft.max_stepz"),
        ({"output_dir": "a", "bogus": 1}, "unknown key bogus"),
        ({"output_dir": "a", "sft": {"max_steps": "many"}}, "sft.max_steps: expected an integer, got str 'many'"),
        ({"output_dir": "a", "sft": {"max_steps": 1.5}}, "sft.max_steps: expected an integer"),
        ({"output_dir": "a", "sft": {"bf16": "yes"}}, "sft.bf16: expected true or false"),
        ({"output_dir": "a", "probe": {"ks": 4}}, "probe.ks: expected a list"),
        ({"output_dir": "a", "fusion": {"metric": "pass@2"}}, "fusion.metric: expected one of pass@k, pass@1"),
        ({"output_dir": "a", "data": {"train": [{"pathz": "x"}]}}, "unknown key data.train.0.pathz"),
        ({"output_dir": "a", "probe": {"ks": [1, 16]}}, "probe.ks: k=16 needs 1 <= k <= probe.sampling.n (8)"),
        (
            {"output_dir": "a", "eval": {"sampling": {"repetition_penalty": 0}}},
            "eval.sampling.repetition_penalty: must be > 0 (1.0: off), got 0",
        ),
        ({"output_dir": "a", "probe": {"sampling": {"top_p": 0}}}, "probe.sampling.top_p: must be in (0, 1], got 0"),
        ({"output_dir": "a", "fusion": {"k": 2}}, "fusion.k: 2 is not among probe.ks"),
        ({"output_dir": "a", "data": {"train": [{"reward": "nope"}]}}, "data.train.0.reward: unknown reward 'nope'"),
        ({"sft": {"max_steps": 3}}, "output_dir: required"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path, data, message):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, data))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "trl,message",
    [
        ("{not_a_trl_field: 1}", "unknown key sft.trl.not_a_trl_field: not a field of trl.SFTConfig"),
        (
            "{learning_rate: 0.1}",
            "sft.trl.learning_rate duplicates sft.learning_rate: set it once, as sft.learning_rate",
        ),
        ("{completion_only_loss: false}", "sft.trl.completion_only_loss: ssp sets trl.SFTConfig.completion_only_loss"),
    ],
)
def test_sft_trl_keys_are_checked_before_the_run_folder(tmp_path, capsys, trl, message):
    """Against TRL's SFTConfig when the stage starts: loading a recipe does not import TRL."""
    load_recipe(DEMO, [f"sft.trl={trl}"])
    out = tmp_path / "run"
    assert main(["sft", str(DEMO), f"output_dir={out}", f"sft.trl={trl}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_missing_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(RecipeError, match=f"data.probe.0.path: file not found: {missing}"):
        load_recipe(DEMO, [f"data.probe=[{{path: {missing}}}]"])
    with pytest.raises(RecipeError, match="model.name_or_path: model folder not found: ./no-such-model"):
        load_recipe(DEMO, ["model.name_or_path=./no-such-model"])
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "absent.yaml")


def test_override_errors():
    with pytest.raises(RecipeError, match="not of the form key=value"):
        load_recipe(DEMO, ["sft.max_steps"])
    with pytest.raises(RecipeError, match="unknown key sft.nope"):
        load_recipe(DEMO, ["sft.nope=1"])
    with pytest.raises(RecipeError, match="no list item '3' in data.train"):
        load_recipe(DEMO, ["data.train.3.limit=1"])


def test_from_dict_accepts_nested_dataclasses():
    recipe = from_dict(Recipe, {"output_dir": "x", "model": {"tiny": {"hidden_size": 64}}})
    assert recipe.model.tiny.hidden_size == 64
    assert recipe.model.tiny.num_layers == 4


@pytest.mark.parametrize(
    "recipe_path",
    # recipes/data/ holds data-command recipes and recipes/ablations/ sweep files (tests/test_sweep.py loads those)
    sorted(
        p
        for p in (REPO / "recipes").rglob("*.yaml")
        if p.relative_to(REPO / "recipes").parts[0] == "demo" or p.parent == REPO / "recipes"
    ),
    ids=lambda p: str(p.parent.name + "/" + p.name),
)
def test_every_shipped_recipe_validates(recipe_path, tmp_path, monkeypatch):
    # RL recipes start from a spectrum run folder (relative to where ssp is launched): provide one with a merged model.
    # The real recipes train on the files `ssp data` writes (recipes/data/, tested in tests/test_data_*.py).
    monkeypatch.chdir(tmp_path)
    for run in ("runs/sft", "runs/demo-sft"):
        (tmp_path / run / "spectrum").mkdir(parents=True)
        (tmp_path / run / "spectrum" / "config.json").write_text("{}")
    (tmp_path / "data" / "sft").mkdir(parents=True)
    (tmp_path / "data" / "rl").mkdir(parents=True)
    (tmp_path / "data" / "probe").mkdir(parents=True)
    for name in ("sft/math.jsonl", "sft/code.jsonl", "rl/math.jsonl", "rl/code.jsonl", "probe/math.jsonl"):
        (tmp_path / "data" / name).write_text("")
    recipe = load_recipe(recipe_path)
    assert recipe.output_dir
    assert resolve_stages(recipe.rl)  # the curriculum, which the signal stage resolves and checks


def test_cli_error_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["sft", str(DEMO), f"output_dir={out}", "sft.max_stepz=3"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip().splitlines() == [
        "ssp: error: unknown key sft.max_stepz (known in sft: " + captured.err.split("(known in sft: ")[1].strip()
    ]
    assert not out.exists()


def test_cli_wrong_type_and_missing_data_create_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sft", str(DEMO), f"output_dir={out}", "sft.save_every=often"]) == 2
    assert "sft.save_every: expected an integer" in capsys.readouterr().err
    assert main(["sft", str(DEMO), f"output_dir={out}", f"data.train.0.path={tmp_path / 'gone.jsonl'}"]) == 2
    assert f"data.train.0.path: file not found: {tmp_path / 'gone.jsonl'}" in capsys.readouterr().err
    assert not out.exists()


def test_malformed_data_row_stops_before_the_run_folder(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "1+1?", "solution": "\\\\boxed{2}", "domain": "a"}\n{"problem": "2+2?"}\n')
    out = tmp_path / "run"
    assert main(["sft", str(DEMO), f"output_dir={out}", f"data.train.0.path={data}"]) == 2
    err = capsys.readouterr().err
    assert "data.train.0: row 1 has no field 'solution' (fields.solution)" in err
    assert not out.exists()


@pytest.mark.parametrize("extra", [[], ["overwrite=true"]])
def test_a_folder_that_is_not_an_ssp_run_is_refused_even_with_overwrite(extra, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["sft", str(DEMO), f"output_dir={out}", *extra]) == 2
    assert f"output_dir: {out} holds files that are not an ssp run; choose another folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_output_folder_that_cannot_be_written_is_refused(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root may write anywhere: let the check see what a normal user would
        real_access = os.access
        monkeypatch.setattr("ssp.runs.os.access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    try:
        assert main(["sft", str(DEMO), f"output_dir={locked / 'run'}"]) == 2
        err = capsys.readouterr().err
        expected = f"ssp: error: output_dir: {locked / 'run'} cannot be written (no write permission on {locked})"
        assert err.strip().splitlines()[-1] == expected and "Traceback" not in err  # after the demo's budget warning
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_python_dash_m_is_the_same_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ssp", "sft", str(DEMO), f"output_dir={tmp_path / 'r'}", "sft.max_steps=zero"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith("ssp: error: sft.max_steps: expected an integer, got str 'zero'")
    assert not (tmp_path / "r").exists()


def test_fusion_weights_must_name_probed_subdomains(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sft", str(DEMO), f"output_dir={out}", "fusion.weights={geometry: 1.0}"]) == 2
    assert "fusion.weights.geometry: not a probed subdomain (probed: arithmetic, linear, modular, sequence)" in (
        capsys.readouterr().err
    )
    assert not out.exists()
