"""`rl.difficulty_filter`: a stage drops the prompts its initial model solves in all or none of num_generations
samples. A scripted correctness reward fixes each prompt's pass rate, so the kept rows are known in advance."""

import json
import zlib
from pathlib import Path

import pytest

import ssp.signal.difficulty as difficulty
import ssp.signal.run as signal_run
from ssp.cli import main
from ssp.config import RecipeError, RLSection, load_recipe
from ssp.cost import CostMeter
from ssp.data.loading import load_split
from ssp.files import write_json
from ssp.rewards import REWARDS
from ssp.signal.difficulty import difficulty_line, filter_sampling, filter_stage, prompts_per_generation, select_rows

REPO = Path(__file__).resolve().parents[1]
DEMO_RL = REPO / "recipes" / "demo" / "rl.yaml"
G = 4  # num_generations
SMALL = [
    "task.train_size=16",
    "task.test_size=2",
    "rl.per_device_train_batch_size=8",
    f"rl.num_generations={G}",
    "rl.max_completion_length=6",
    "rl.logging_steps=1",
    "eval.sampling.n=2",
    "eval.sampling.max_new_tokens=6",
    "eval.ks=[1,2]",
    "eval.greedy=false",
    "rl.rewards={scripted: 1.0}",
    "rl.data.0.reward=scripted",
]


def outcome(answer: str) -> str:
    """Each prompt's fate under `scripted`, fixed by its gold answer."""
    return ("always", "never", "half")[zlib.crc32(answer.encode()) % 3]


def scripted(completions, answer, **kwargs):
    """1.0 for every sample of an `always` prompt, 0.0 for a `never` one, every other sample of a `half` one (a
    row's samples are scored side by side, G of them, G even)."""
    fate = [outcome(a) for a in answer]
    return [float(f == "always" or (f == "half" and i % 2 == 0)) for i, f in enumerate(fate)]


@pytest.fixture
def scripted_reward(monkeypatch):
    monkeypatch.setitem(REWARDS, "scripted", scripted)
    monkeypatch.setitem(REWARDS, "always", lambda completions, **kwargs: [1.0] * len(completions))


def test_select_rows_keeps_exactly_the_prompts_solved_sometimes():
    counts = [0, 1, 4, 3, 2, 4, 0, 5]  # of 4 samples (5: more correct than samples reads as always solved)
    domains = ["a", "a", "a", "b", "b", "b", "c", "c"]
    rows = [{"id": f"data-{i}", "domain": d} for i, d in enumerate(domains)]
    kept, summary = select_rows(rows, {row["id"]: c for row, c in zip(rows, counts, strict=True)}, 4)
    assert [row["id"] for row in kept] == ["data-1", "data-3", "data-4"]
    assert {k: summary[k] for k in ("prompts", "kept", "always_solved", "never_solved")} == {
        "prompts": 8,
        "kept": 3,
        "always_solved": 3,
        "never_solved": 2,
    }
    assert summary["domains"] == {
        "a": {"prompts": 3, "kept": 1, "always_solved": 1, "never_solved": 1},
        "b": {"prompts": 3, "kept": 2, "always_solved": 1, "never_solved": 0},
        "c": {"prompts": 2, "kept": 0, "always_solved": 1, "never_solved": 1},
    }
    line = difficulty_line("warm", {**summary, "samples": 4})
    assert line == (
        "difficulty filter, stage warm: kept 3 of 8 prompts, dropped 3 always solved and 2 never solved in 4 "
        "samples (a 1/3, b 2/3, c 0/2)"
    )


def test_filter_samples_at_the_stage_rollout_settings():
    rl = RLSection(num_generations=6, temperature=0.7, top_p=0.9, top_k=5, max_completion_length=33,
                   trl={"repetition_penalty": 1.1})  # fmt: skip
    sampling = filter_sampling(rl, batch_size=16)
    assert (sampling.n, sampling.temperature, sampling.top_p, sampling.top_k) == (6, 0.7, 0.9, 5)
    assert (sampling.max_new_tokens, sampling.batch_size, sampling.repetition_penalty) == (33, 16, 1.1)
    assert RLSection().difficulty_filter is False  # off by default


def expected(rows: list[dict]) -> dict[str, str]:
    return {row["id"]: outcome(row["answer"]) for row in rows}


def test_filter_on_the_qwen_shaped_model_and_reuse(tmp_path, qwen_model_dir, scripted_reward, monkeypatch):
    """The filter samples the stage's model through the evaluation, scores with the row's reward, writes
    difficulty.json; a second call reuses it without sampling; a record of other prompts is refused."""
    recipe = load_recipe(DEMO_RL, [f"model.name_or_path={qwen_model_dir}", "eval.sampling.batch_size=4", *SMALL])
    rl = recipe.rl
    rows = load_split(rl.data, recipe.task, "rl.data", recipe.data.prompt_template)
    fates = expected(rows)
    assert set(fates.values()) == {"always", "never", "half"}
    meter = CostMeter("cpu", 1, 0.0)
    stage_dir = tmp_path / "stages" / "main"
    kept, record = filter_stage(recipe, "rl", "main", rl, rows, str(qwen_model_dir), stage_dir, meter)
    assert [row["id"] for row in kept] == [i for i, fate in fates.items() if fate == "half"]
    assert record["per_problem"] == {i: {"always": G, "never": 0, "half": G // 2}[f] for i, f in fates.items()}
    stored = json.loads((stage_dir / "difficulty.json").read_text())
    assert stored == record
    assert (stored["stage"], stored["samples"], stored["model"]) == ("main", G, str(qwen_model_dir))
    assert stored["always_solved"] == list(fates.values()).count("always")
    assert stored["never_solved"] == list(fates.values()).count("never")
    assert stored["kept"] == len(kept) and stored["prompts"] == len(rows) == 16
    for domain, counts in stored["domains"].items():
        domain_fates = [fates[row["id"]] for row in rows if row["domain"] == domain]
        assert counts == {"prompts": len(domain_fates), "kept": domain_fates.count("half"),
                          "always_solved": domain_fates.count("always"),
                          "never_solved": domain_fates.count("never")}  # fmt: skip
    assert stored["tokens_generated"] > 0 and "filter:main" in meter.phases

    def no_sampling(*args, **kwargs):
        raise AssertionError("a stored difficulty.json is reused, not recomputed")

    monkeypatch.setattr(difficulty, "evaluate_model", no_sampling)
    again, _ = filter_stage(recipe, "rl", "main", rl, rows, str(qwen_model_dir), stage_dir, meter)
    assert again == kept
    with pytest.raises(RecipeError, match="counted for other prompts than stage main's; delete it"):
        filter_stage(recipe, "rl", "main", rl, rows[:-1], str(qwen_model_dir), stage_dir, meter)


@pytest.mark.slow
def test_filtered_stage_trains_on_the_kept_rows(tmp_path, tiny_model_dir, scripted_reward, monkeypatch, capsys):
    """Two stages, the filter on in the first only: the first trains on the kept rows, the second (filter off, the
    default) on all of them with no difficulty.json; the counts reach signal.json and the cost; a rerun reuses it."""
    trained = {}
    real_train_stage = signal_run.train_stage

    def recording_train_stage(recipe, name, rl, rows, *args):
        trained[name] = [row["id"] for row in rows]
        return real_train_stage(recipe, name, rl, rows, *args)

    monkeypatch.setattr(signal_run, "train_stage", recording_train_stage)
    out = tmp_path / "run"
    stages = "rl.stages=[{name: first, max_steps: 1, difficulty_filter: true}, {name: second, max_steps: 1}]"
    command = ["rl", str(DEMO_RL), f"output_dir={out}", f"model.name_or_path={tiny_model_dir}", *SMALL, stages]
    assert main(command) == 0
    recipe = load_recipe(DEMO_RL, command[2:])
    rows = load_split(recipe.rl.data, recipe.task, "rl.stages.0.data", recipe.data.prompt_template)
    fates = expected(rows)
    assert trained["first"] == [i for i, fate in fates.items() if fate == "half"]
    assert trained["second"] == list(fates)
    record = json.loads((out / "stages" / "first" / "difficulty.json").read_text())
    initial = out / "base" if (out / "base").is_dir() else tiny_model_dir  # the stage's initial model sampled
    assert record["model"] == str(initial) and record["kept"] == len(trained["first"])
    assert not (out / "stages" / "second" / "difficulty.json").exists()
    printed = capsys.readouterr().out
    assert difficulty_line("first", record) in printed
    signal = json.loads((out / "signal.json").read_text())
    counts = {k: record[k] for k in ("prompts", "kept", "always_solved", "never_solved")}
    assert signal["stages"]["first"]["difficulty"] == counts
    assert "difficulty" not in signal["stages"]["second"]
    cost = json.loads((out / "cost.json").read_text())
    assert "filter:first" in cost["phases_seconds"] and "filter:second" not in cost["phases_seconds"]
    stage_tokens = sum(signal["stages"][s]["tokens_generated"] for s in ("first", "second"))
    assert cost["tokens_generated"] >= stage_tokens + record["tokens_generated"]

    def no_sampling(*args, **kwargs):
        raise AssertionError("a stored difficulty.json is reused, not recomputed")

    monkeypatch.setattr(difficulty, "evaluate_model", no_sampling)
    assert main(command) == 0  # everything was done: reused
    assert difficulty_line("first", record) in capsys.readouterr().out
    assert json.loads((out / "cost.json").read_text())["tokens_generated"] == cost["tokens_generated"]


def test_every_prompt_dropped_is_a_one_line_error(tmp_path, tiny_model_dir, scripted_reward, capsys):
    out = tmp_path / "run"
    always = ["rl.rewards={always: 1.0}", "rl.data.0.reward=always", "rl.difficulty_filter=true", "eval.base=false"]
    command = ["rl", str(DEMO_RL), f"output_dir={out}", f"model.name_or_path={tiny_model_dir}", *SMALL, *always]
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert err == (
        f"ssp: error: rl.difficulty_filter: stage main has no prompts left: of 16, its initial model solved 16 in "
        f"all {G} samples and 0 in none (counts in {out / 'stages' / 'main' / 'difficulty.json'}); use prompts of "
        "mixed difficulty, raise num_generations, or turn the filter off"
    )
    assert json.loads((out / "stages" / "main" / "difficulty.json").read_text())["always_solved"] == 16
    assert not (out / "stages" / "main" / "metrics.json").exists()


def test_too_few_kept_prompts_for_one_generation_batch_is_an_error(tmp_path):
    """TRL's sampler drops an incomplete generation batch: one kept prompt where a batch takes two would train
    nothing, silently. The record is a stored one, so nothing is sampled."""
    recipe = load_recipe(DEMO_RL, ["model.name_or_path=unused", *SMALL], check_files=False)
    rows = [{"id": f"data-{i}", "domain": "a"} for i in range(3)]
    stage_dir = tmp_path / "stages" / "main"
    counts = {"prompts": 3, "kept": 1, "always_solved": 1, "never_solved": 1, "domains": {}}
    write_json(stage_dir / "difficulty.json", {"samples": G, **counts, "per_problem": {"data-0": 0, "data-1": 2,
                                                                                       "data-2": G}})  # fmt: skip
    assert prompts_per_generation(recipe.rl, 1) == 8 // G
    with pytest.raises(RecipeError) as info:
        filter_stage(recipe, "rl", "main", recipe.rl, rows, "unused", stage_dir, CostMeter("cpu", 1, 0.0))
    assert str(info.value) == (
        f"rl.difficulty_filter: stage main keeps 1 of 3 prompts, fewer than the 2 of one generation batch, so it "
        f"would train no step (counts in {stage_dir / 'difficulty.json'}); use more prompts of mixed difficulty or "
        "lower rl.per_device_train_batch_size"
    )
    steps = RLSection(per_device_train_batch_size=8, num_generations=4, trl={"steps_per_generation": 3})
    assert prompts_per_generation(steps, 2) == 8 * 2 * 3 // 4
    assert prompts_per_generation(RLSection(num_generations=4, trl={"generation_batch_size": 12}), 2) == 3
