"""Bad input, as a new user would give it: one line on stderr, exit status 2, and nothing written (issue 11)."""

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_eval import FakeBackend, use_backend, write_data

from ssp.cli import main
from ssp.commands import stages
from ssp.config import DataSource, RecipeError, load_recipe
from ssp.data import records
from ssp.data.records import MAX_ROW_BYTES, read_records
from ssp.evaluation import run as eval_run
from ssp.spectrum import fusion
from ssp.spectrum.selection import best_single_checkpoint, metric_key, select_checkpoints

REPO = Path(__file__).resolve().parents[1]
DEMO_SFT = REPO / "recipes" / "demo" / "sft.yaml"
DEMO_RL = REPO / "recipes" / "demo" / "rl.yaml"


def one_error_line(capsys) -> str:
    """The single line the command printed on stderr (nothing on stdout)."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == ""
    return lines[0]


def last_error_line(capsys) -> str:
    """The line a command that showed progress bars ended with; there is no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[-1]


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def make_model_dir(path: Path, value: float) -> Path:
    path.mkdir(parents=True)
    save_file({"w": torch.full((2,), value)}, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 2}))
    return path


# --- probe.ks without 1 ------------------------------------------------------------------------------------------


def test_probe_ks_without_1_selects_by_pass_at_k_alone(tmp_path):
    recipe = load_recipe(DEMO_SFT, [f"output_dir={tmp_path / 'run'}", "probe.ks=[8]", "fusion.k=8"])
    key = metric_key(recipe.fusion.metric, recipe.fusion.k)
    probe = {  # what probing writes with probe.ks [8]: no pass@1
        "step-10": {"a": {"pass@8": 0.5}, "b": {"pass@8": 0.9}, "all": {"pass@8": 0.7}},
        "step-20": {"a": {"pass@8": 0.75}, "b": {"pass@8": 0.9}, "all": {"pass@8": 0.8}},
    }
    selection = select_checkpoints(probe, key)
    assert selection == {"a": {"checkpoint": "step-20", "score": 0.75}, "b": {"checkpoint": "step-20", "score": 0.9}}
    assert best_single_checkpoint(probe, key) == "step-20"


def test_selecting_by_pass_at_1_without_1_among_probe_ks_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sft", str(DEMO_SFT), f"output_dir={out}", "probe.ks=[8]", "fusion.metric=pass@1"]) == 2
    assert one_error_line(capsys) == "ssp: error: fusion.metric: pass@1 is probed only when probe.ks holds 1, got [8]"
    assert not out.exists()


# --- numeric ranges ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipe,override,message",
    [
        (DEMO_SFT, "sft.learning_rate=-1e-3", "sft.learning_rate: must be >= 0, got -0.001"),
        (DEMO_RL, "rl.learning_rate=-5e-5", "rl.learning_rate: must be >= 0, got -5e-05"),
        (
            DEMO_RL,
            "rl.stages=[{name: first}, {name: second, learning_rate: -0.1}]",
            "rl.stages.1.learning_rate: must be >= 0, got -0.1",
        ),
    ],
)
def test_a_negative_learning_rate_is_refused_before_anything_is_written(tmp_path, capsys, recipe, override, message):
    out = tmp_path / "run"
    command = ["rl", str(recipe), "model.name_or_path=tiny"] if recipe == DEMO_RL else ["sft", str(recipe)]
    assert main([*command, f"output_dir={out}", override]) == 2
    assert one_error_line(capsys) == f"ssp: error: {message}"
    assert not out.exists()


@pytest.mark.parametrize(
    "override,message",
    [
        ("sft.warmup_ratio=1.0", "sft.warmup_ratio: must be in [0, 1), got 1.0"),
        ("sft.weight_decay=-0.1", "sft.weight_decay: must be >= 0, got -0.1"),
        ("sft.max_steps=0", "sft.max_steps: must be positive, or -1 to use num_train_epochs, got 0"),
        ("sft.num_train_epochs=0", "sft.num_train_epochs: must be > 0, got 0.0"),
        ("sft.per_device_train_batch_size=0", "sft.per_device_train_batch_size: must be >= 1, got 0"),
        ("sft.gradient_accumulation_steps=0", "sft.gradient_accumulation_steps: must be >= 1, got 0"),
        ("rl.warmup_ratio=-0.5", "rl.warmup_ratio: must be in [0, 1), got -0.5"),
        ("rl.weight_decay=-1", "rl.weight_decay: must be >= 0, got -1.0"),
        ("rl.max_steps=0", "rl.max_steps: must be >= 1, got 0"),
        ("rl.per_device_train_batch_size=0", "rl.per_device_train_batch_size: must be >= 1, got 0"),
        (
            "rl.num_generations=1",
            "rl.num_generations: must be >= 2 (GRPO compares the completions of a prompt), got 1",
        ),
        ("rl.temperature=0", "rl.temperature: must be > 0, got 0.0"),
        ("rl.top_p=1.5", "rl.top_p: must be in (0, 1], got 1.5"),
        ("rl.epsilon=0", "rl.epsilon: must be > 0, got 0.0"),
        ("rl.beta=-0.1", "rl.beta: must be >= 0, got -0.1"),
        ("rl.save_every=0", "rl.save_every: must be >= 1, got 0"),
        ("eval.sampling.temperature=-1", "eval.sampling.temperature: must be >= 0, got -1.0"),
        ("probe.sampling.batch_size=0", "probe.sampling.batch_size: must be >= 1, got 0"),
        ("data.train.0.limit=0", "data.train.0.limit: must be >= 1, got 0"),
        ("cost.prices.cpu=-1", "cost.prices.cpu: must be >= 0, got -1.0"),
    ],
)
def test_numbers_out_of_range_name_the_key_the_rule_and_the_value(tmp_path, override, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(DEMO_SFT, [f"output_dir={tmp_path / 'run'}", override], check_files=False)
    assert str(error.value) == message


# --- data files --------------------------------------------------------------------------------------------------

GOOD_ROW = json.dumps({"problem": "1+1?", "solution": "\\boxed{2}", "domain": "a"}) + "\n"


@pytest.mark.parametrize(
    "second_line,message",
    [
        (b'{"problem": "caf\xe9?"}\n', "line 2 is not UTF-8 text (byte 0xe9 at column 17); convert the file to UTF-8"),
        (b'{"problem": "2+2?",}\n', "line 2 is not valid JSON: Expecting property name enclosed in double quotes"),
        (b'["2+2?"]\n', "line 2 is a list, expected an object"),
    ],
)
def test_an_unreadable_jsonl_line_is_named_before_the_run_folder_exists(tmp_path, capsys, second_line, message):
    data = tmp_path / "train.jsonl"
    data.write_bytes(GOOD_ROW.encode() + second_line)
    out = tmp_path / "run"
    assert main(["sft", str(DEMO_SFT), f"output_dir={out}", f"data.train.0.path={data}"]) == 2
    assert one_error_line(capsys) == f"ssp: error: data.train.0: {data} {message}"
    assert not out.exists()


def test_a_non_utf8_json_file_names_its_line(tmp_path):
    data = tmp_path / "train.json"
    data.write_bytes(b'[\n  {"problem": "1+1?"},\n  {"problem": "\xff"}\n]\n')
    with pytest.raises(records.DataError) as error:
        read_records(DataSource(path=str(data)), "data.train.0")
    assert str(error.value) == (
        f"data.train.0: {data} line 3 is not UTF-8 text (byte 0xff at column 16); convert the file to UTF-8"
    )


def test_a_jsonl_file_with_a_utf8_byte_order_mark_reads(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + GOOD_ROW.encode())
    assert records.read_jsonl(data, "data.train.0") == [json.loads(GOOD_ROW)]


def test_a_row_over_the_size_bound_is_refused_with_its_line_and_size(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    huge = json.dumps({"problem": "x" * (9 * 2**20), "solution": "\\boxed{1}", "domain": "a"}) + "\n"
    data.write_text(GOOD_ROW + huge + GOOD_ROW)
    out = tmp_path / "run"
    assert main(["sft", str(DEMO_SFT), f"output_dir={out}", f"data.train.0.path={data}"]) == 2
    assert one_error_line(capsys) == (
        f"ssp: error: data.train.0: {data} line 2 is {len(huge) / 2**20:.1f} MB; a row may hold at most "
        f"{MAX_ROW_BYTES // 2**20} MB (MAX_ROW_BYTES in ssp/data/records.py)"
    )
    assert not out.exists()


def test_large_files_show_a_reading_progress_bar_and_small_ones_do_not(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(records, "PROGRESS_BYTES", 4096)  # the bar's threshold, lowered so the file stays small
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_text(GOOD_ROW * 100)
    small.write_text(GOOD_ROW * 10)
    assert len(records.read_jsonl(big, "data.train.0")) == 100
    assert "reading big.jsonl" in capsys.readouterr().err
    assert len(records.read_jsonl(small, "data.train.0")) == 10
    assert capsys.readouterr().err == ""


# --- ssp merge ---------------------------------------------------------------------------------------------------


def test_merge_into_one_of_its_inputs_is_refused_before_anything_is_written(tmp_path, capsys):
    a, b = make_model_dir(tmp_path / "a", 0.0), make_model_dir(tmp_path / "b", 2.0)
    before = files_under(tmp_path)
    cases = [
        (a, f"output {a} is the input model {a}"),
        (a / "merged", f"output {a / 'merged'} is inside the input model {a}"),
        (tmp_path, f"output {tmp_path} holds the input model {a}"),
    ]
    for out, message in cases:
        assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
        assert one_error_line(capsys) == f"ssp: error: {message}; choose another output folder"
        assert files_under(tmp_path) == before


def test_merge_refuses_inputs_that_are_not_models_and_outputs_that_are_not_models(tmp_path, capsys):
    a = make_model_dir(tmp_path / "a", 0.0)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    before = files_under(tmp_path)
    assert main(["merge", str(a), str(tmp_path / "notes"), "--out", str(tmp_path / "m")]) == 2
    assert one_error_line(capsys) == f"ssp: error: {tmp_path / 'notes'}: not a model folder (no config.json)"
    assert main(["merge", str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2
    assert one_error_line(capsys) == f"ssp: error: {tmp_path / 'missing'}: model folder not found"
    assert main(["merge", str(a), "--out", str(tmp_path / "notes")]) == 2
    assert one_error_line(capsys) == (
        f"ssp: error: output {tmp_path / 'notes'} holds files that are not a model; choose another output folder"
    )
    assert files_under(tmp_path) == before


# --- ssp eval and ssp generate on a folder that is not a model ---------------------------------------------------


def test_eval_on_a_folder_that_is_not_a_model_writes_nothing(tmp_path, capsys):
    folder, out = tmp_path / "not-a-model", tmp_path / "eval"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    assert main(["eval", "--model", str(folder), "--benchmarks", "aime24", "--out", str(out)]) == 2
    assert one_error_line(capsys) == f"ssp: error: --model: {folder} is not a model folder (no config.json)"
    assert not out.exists()
    assert main(["generate", "--model", str(folder), "What is 2+2?"]) == 2
    assert one_error_line(capsys) == f"ssp: error: --model: {folder} is not a model folder (no config.json)"


def test_eval_writes_nothing_when_the_model_does_not_load(tmp_path, monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise RecipeError("could not load fake-org/m")

    monkeypatch.setattr(eval_run, "get_backend", no_model)
    out = tmp_path / "eval"
    args = ["eval", "--model", "fake-org/m", "--benchmarks", "aime25", "--data-dir", str(write_data(tmp_path / "d"))]
    assert main([*args, "--out", str(out)]) == 2
    assert one_error_line(capsys) == "ssp: error: could not load fake-org/m"
    assert not out.exists()  # no eval_config.json nor an empty samples file for a later run to resume from


# --- Ctrl-C ------------------------------------------------------------------------------------------------------


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_a_training_stage_says_where_the_work_is_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(stages, "run_spectrum", interrupt)
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "run"
    assert main(["sft", str(DEMO_SFT), f"output_dir={out}"]) == 2
    assert one_error_line(capsys) == (
        f"ssp: interrupted: finished work is kept in {out}; rerun the same command to resume "
        "(overwrite=true starts over)"
    )


def test_ctrl_c_is_reported_by_the_main_process_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(stages, "run_spectrum", interrupt)
    monkeypatch.setenv("RANK", "1")
    assert main(["sft", str(DEMO_SFT), f"output_dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err == ""


def test_ctrl_c_in_eval_says_the_samples_are_kept(tmp_path, monkeypatch, capsys):
    use_backend(monkeypatch, FakeBackend(fail_on_call=1))
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "eval"
    args = ["eval", "--model", "fake-org/m", "--benchmarks", "aime25", "--data-dir", str(write_data(tmp_path / "d"))]
    assert main([*args, "--out", str(out), "--n", "4", "--batch-size", "1"]) == 2
    assert last_error_line(capsys) == (  # after the sampling progress bar
        f"ssp: interrupted: finished samples are kept in {out}; rerun the same command to resume"
    )
    assert len((out / "samples" / "aime25.jsonl").read_text().splitlines()) == 4  # the first chunk


def test_ctrl_c_in_merge_leaves_nothing(tmp_path, monkeypatch, capsys):
    a, b = make_model_dir(tmp_path / "a", 0.0), make_model_dir(tmp_path / "b", 2.0)
    before = files_under(tmp_path)
    monkeypatch.setattr(fusion, "save_file", interrupt)
    monkeypatch.delenv("RANK", raising=False)
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    assert one_error_line(capsys) == "ssp: interrupted: nothing was written"
    assert files_under(tmp_path) == before


# --- nothing written before validation passes, for every command -------------------------------------------------


def test_invalid_commands_leave_the_working_folder_as_it_was(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"problem": "\xff"}\n')
    not_a_model = tmp_path / "folder"
    not_a_model.mkdir()
    rl_set = tmp_path / "rl_set.yaml"
    rl_set.write_text(json.dumps({"output": "rl.jsonl", "sources": [{"path": str(bad)}]}))
    before = files_under(tmp_path)
    not_utf8 = "line 1 is not UTF-8 text (byte 0xff at column 14); convert the file to UTF-8"
    cases = [
        (["eval", "--model", str(not_a_model), "--benchmarks", "aime24"], "--model: {model} is not a model folder"),
        (["generate", "--model", str(not_a_model), "What is 2+2?"], "--model: {model} is not a model folder"),
        (["generate", "--model", "org/model", "--n", "0", "What is 2+2?"], "sampling.n: must be >= 1, got 0"),
        (["merge", str(not_a_model), "--out", "merged"], "{model}: not a model folder"),
        (["data", "rl", str(rl_set)], f"sources.0: {bad} {not_utf8}"),
        (["data", "decontaminate", str(bad), "--out", "out.jsonl", "--benchmarks", "gsm8k"], f"input {bad}: {bad}"),
        (["plan", str(DEMO_SFT), "sft.learning_rate=-1"], "sft.learning_rate: must be >= 0, got -1.0"),
        (["sft", str(DEMO_SFT), "output_dir=run", "sft.weight_decay=-1"], "sft.weight_decay: must be >= 0, got -1.0"),
    ]
    for command, message in cases:
        assert main(command) == 2, command
        assert one_error_line(capsys).startswith("ssp: error: " + message.format(model=not_a_model)), command
    assert files_under(tmp_path) == before


# --- ssp --version and a light ssp --help ------------------------------------------------------------------------


def test_version_prints_the_package_version():
    result = subprocess.run([sys.executable, "-m", "ssp", "--version"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    assert result.stdout == f"ssp {importlib.metadata.version('ssp')}\n"


def test_help_imports_no_heavy_library():
    script = (
        "import sys\nfrom ssp.cli import main\n"
        "for argv in (['--help'], ['--version'], ['no-such-command']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = ('torch', 'transformers', 'trl', 'datasets', 'vllm', 'accelerate')\n"
        "print(sorted(name for name in heavy if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "sft" in result.stdout and "invalid choice: 'no-such-command'" in result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("stage,recipe", [("sft", DEMO_SFT), ("rl", DEMO_RL)])
def test_a_recipe_model_that_is_not_a_model_folder_is_refused_before_the_run_folder_exists(
    stage, recipe, tmp_path, capsys
):
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "readme.txt").write_text("not weights")
    out = tmp_path / "run"
    assert main([stage, str(recipe), f"output_dir={out}", f"model.name_or_path={not_a_model}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ssp: error: model.name_or_path: {not_a_model} is not a model folder (no config.json)"
    ]
    assert not out.exists()
