"""`ssp sweep`: a 2-variant x 2-seed sweep on a shrunk demo, its sharing, its tables and intervals (recomputed here
from the run folders), rerun and resume, its errors, and its Slurm arrays."""

import csv
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess

import pytest
import yaml
from test_demo import SMALL_RL
from test_launch_scripts import LAUNCH, REPO, fake_slurm, printed_commands  # noqa: F401 (a fixture)
from test_resume import ssp_run
from test_spectrum_run import SMALL as SMALL_SFT

import ssp.spectrum.run
import ssp.sweep.run
from ssp.cli import main
from ssp.config import RecipeError
from ssp.signal.run import signal_stages
from ssp.sweep.plan import grid_variants, load_sweep
from ssp.sweep.run import run_sweep
from ssp.sweep.stats import paired_bootstrap, seed_interval, t_quantile

MODELS = ["base", "best_single", "spectrum", "rl:main"]


def write_sweep(path, out, variants, seeds=(0, 1), **extra) -> str:
    """A sweep of the shrunk demo; RL-only variants (`rl.mgpo_lambda`) unless a variant says otherwise."""
    config = {"output_dir": str(out), "seeds": list(seeds), "common": {"sft": SMALL_SFT, "rl": SMALL_RL},
              "variants": variants, **extra}  # fmt: skip
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


LAMBDAS = [{"name": "mgpo", "rl": ["rl.mgpo_lambda=1"]}, {"name": "grpo", "rl": ["rl.mgpo_lambda=0"]}]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    path = write_sweep(root / "sweep.yaml", root / "out", LAMBDAS, baseline="mgpo")
    record = run_sweep(load_sweep(path))
    return root, path, record


def read_csv(path) -> list[dict]:
    with open(path) as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_rl_only_variants_share_one_sft_run_per_seed(sweep):
    root, _, record = sweep
    runs = sorted(p.name for p in (root / "out" / "runs").iterdir())
    assert [r[:3] for r in runs] == ["rl-"] * 4 + ["sft"] * 2  # 2 seeds: 2 SFT runs for 4 pipelines
    sft_of = {pair: names[0] for pair, names in record["pipelines"].items()}
    assert sft_of["mgpo seed 0"] == sft_of["grpo seed 0"] != sft_of["mgpo seed 1"] == sft_of["grpo seed 1"]
    rl_recipe = yaml.safe_load(
        (root / "out" / "recipes" / f"{record['pipelines']['grpo seed 1'][1]}.yaml").read_text()
    )
    assert rl_recipe["rl"]["mgpo_lambda"] == 0.0 and rl_recipe["seed"] == 1
    assert rl_recipe["model"]["name_or_path"] == str(root / "out" / "runs" / sft_of["grpo seed 1"])


@pytest.mark.slow
def test_reports_hold_every_variant_and_model(sweep):
    root, _, _ = sweep
    rows = read_csv(root / "out" / "sweep.csv")
    assert [(r["variant"], r["model"]) for r in rows] == [(v, m) for v in ("mgpo", "grpo") for m in MODELS]
    assert [r["final"] for r in rows] == ["False", "False", "False", "True"] * 2
    assert {r["seeds"] for r in rows} == {"2"}
    for name in ("pass_at_k", "rl_curves", "accuracy_vs_dollars"):
        png = root / "out" / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}](plots/{name}.png)" in (root / "out" / "sweep.md").read_text()
    markdown = (root / "out" / "sweep.md").read_text()
    assert "| mgpo (baseline) |" in markdown and "| grpo |" in markdown
    assert "2 variants x 2 seeds (0, 1); baseline `mgpo`" in markdown


def rewrite_final_evaluations(out, record, rng) -> dict:
    """Give every RL run's final evaluation known per-problem counts; returns (variant, seed) -> pass rates."""
    rates = {}
    for pair, (_, rl_run) in record["pipelines"].items():
        variant, seed = pair.split(" seed ")
        path = out / "runs" / rl_run / "signal.json"
        signal_record = json.loads(path.read_text())
        entry = signal_record["evaluations"]["main"]
        samples = entry["samples"]
        entry["per_problem"] = {problem: rng.randint(0, samples) for problem in entry["per_problem"]}
        rates[(variant, int(seed))] = {p: c / samples for p, c in entry["per_problem"].items()}
        entry["pass@1"] = statistics.fmean(rates[(variant, int(seed))].values())
        path.write_text(json.dumps(signal_record))
    return rates


@pytest.mark.slow
def test_intervals_recomputed_from_the_run_folders(sweep, tmp_path):
    """Known per-problem results in the run folders; the means, t-intervals and paired differences the sweep
    collects match the ones computed here."""
    root, path, record = sweep
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    rates = rewrite_final_evaluations(out, record, random.Random(7))
    assert main(["sweep", path, f"output_dir={out}", "--collect"]) == 0
    rows = {(r["variant"], r["model"]): r for r in read_csv(out / "sweep.csv")}
    for variant in ("mgpo", "grpo"):
        per_seed = [statistics.fmean(rates[(variant, seed)].values()) for seed in (0, 1)]
        half = 12.706 * statistics.stdev(per_seed) / math.sqrt(2)
        row = rows[(variant, "rl:main")]
        assert float(row["pass@1"]) == pytest.approx(statistics.fmean(per_seed))
        assert float(row["pass@1_low"]) == pytest.approx(statistics.fmean(per_seed) - half)
        assert float(row["pass@1_high"]) == pytest.approx(statistics.fmean(per_seed) + half)
    differences = [[rates[("grpo", s)][p] - rates[("mgpo", s)][p] for p in rates[("mgpo", s)]] for s in (0, 1)]
    expected = statistics.fmean(statistics.fmean(d) for d in differences)
    row = rows[("grpo", "rl:main")]
    assert float(row["diff_pass@1_mean"]) == pytest.approx(expected)
    assert float(row["diff_pass@1_low"]) <= expected <= float(row["diff_pass@1_high"])
    averaged = [statistics.fmean(pair) for pair in zip(*differences, strict=True)]  # the seeds share the problems
    assert float(row["diff_pass@1_se"]) == pytest.approx(
        statistics.pstdev(averaged) / math.sqrt(len(averaged)), rel=0.1
    )
    assert rows[("mgpo", "rl:main")]["diff_pass@1_mean"] == "nan"  # the baseline has no difference to itself
    markdown = (out / "sweep.md").read_text()
    low, high = float(row["diff_pass@1_low"]), float(row["diff_pass@1_high"])
    assert f"{expected:+.3f} [{low:+.3f}, {high:+.3f}]" in markdown


@pytest.mark.slow
def test_a_rerun_does_no_work(sweep, monkeypatch):
    _, path, record = sweep

    def refuse(recipe):
        raise AssertionError(f"a finished run ran again: {recipe.output_dir}")

    monkeypatch.setattr(ssp.sweep.run, "run_spectrum", refuse)
    monkeypatch.setattr(ssp.sweep.run, "run_signal", refuse)
    assert run_sweep(load_sweep(path))["rows"] == record["rows"]


def test_a_subset_of_variants_collects_from_a_link_to_the_runs(sweep, tmp_path, monkeypatch):
    """One included file's table and plots from the runs of the sweep that included it: runs/ is linked, nothing
    runs again, and the rows are that sweep's rows of the variants kept."""
    root, _, record = sweep
    monkeypatch.setattr(ssp.sweep.run, "run_spectrum", pytest.fail)
    monkeypatch.setattr(ssp.sweep.run, "run_signal", pytest.fail)
    out = tmp_path / "subset"
    out.mkdir()
    (out / "runs").symlink_to(root / "out" / "runs")
    path = write_sweep(tmp_path / "subset.yaml", out, LAMBDAS[:1])
    subset = run_sweep(load_sweep(path), collect_only=True)
    assert subset["rows"] == [row for row in record["rows"] if row["variant"] == "mgpo"]
    assert (out / "sweep.md").is_file() and (out / "plots" / "pass_at_k.png").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    elsewhere = write_sweep(tmp_path / "elsewhere.yaml", tmp_path / "other", LAMBDAS[:1])
    with pytest.raises(RecipeError, match="holds files that are not an ssp sweep; choose another folder"):
        run_sweep(load_sweep(elsewhere), collect_only=True)


@pytest.mark.slow
def test_fusion_variants_reuse_the_training_of_the_first(tmp_path, monkeypatch):
    """`no-merge` differs from the baseline in `fusion` only: its SFT run is its own (its selection, merge and
    evaluation), started from the baseline's checkpoints and probe results, and trains nothing."""
    variants = [{"name": "uniform"}, {"name": "no-merge", "sft": ["fusion.merge=none", "fusion.metric=pass@1"]}]
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", variants, seeds=[0], baseline="uniform")
    plan = load_sweep(path)
    first, reusing = [run for run in plan.runs.values() if run.stage == "sft"]
    assert (first.trained_by, reusing.trained_by) == (None, first.name)
    trained, real_train = [], ssp.spectrum.run.train_sft

    def counted(recipe, base_path, examples, out, meter):
        if not (out / "train.json").is_file():
            trained.append(out.name)
        return real_train(recipe, base_path, examples, out, meter)

    monkeypatch.setattr(ssp.spectrum.run, "train_sft", counted)
    record = run_sweep(plan)
    assert trained == [first.name]
    source, target = plan.run_dir(first.name), plan.run_dir(reusing.name)
    for checkpoint in ("step-3", "step-6"):  # the same files: hard links
        weights = f"checkpoints/{checkpoint}/model.safetensors"
        assert (target / weights).stat().st_ino == (source / weights).stat().st_ino
    probe = [json.loads((folder / "probe.json").read_text())["checkpoints"] for folder in (source, target)]
    assert probe[0] == probe[1]
    selection = json.loads((target / "selection.json").read_text())
    assert (selection["merge"], selection["metric"]) == ("none", "pass@1")
    # Its cost is its pipeline's as if it ran alone (the training's time in it); the sweep's total counts it once.
    costs = {folder: json.loads((folder / "cost.json").read_text()) for folder in (source, target)}
    assert costs[target]["phases_seconds"]["train"] == costs[source]["phases_seconds"]["train"]
    shared = json.loads((target / "shared_training.json").read_text())
    assert shared["from"] == first.name
    assert shared["wall_seconds"] == pytest.approx(sum(costs[source]["phases_seconds"][p] for p in ("train", "probe")))
    every_run = sum(json.loads((plan.run_dir(name) / "cost.json").read_text())["wall_seconds"] for name in plan.runs)
    assert record["cost"]["wall_seconds"] == pytest.approx(every_run - shared["wall_seconds"])
    assert "1 reusing another's training" in ssp.sweep.run.dry_run(plan)


@pytest.mark.slow
def test_an_interrupted_sweep_resumes(tmp_path):
    """Killed as its second RL run starts; the rerun trains only that run (no SFT step again) and collects."""
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", LAMBDAS, seeds=[0])
    code, before = ssp_run(tmp_path / "killed.json", "sweep", path, point="stage", n=2)
    assert code == -signal.SIGKILL and before["stage"] == 2
    code, after = ssp_run(tmp_path / "resumed.json", "sweep", path)
    assert after["stage"] == 1 and "test" not in after  # the SFT run and the first RL run are finished
    assert after["step"] == 2  # rl.max_steps of the one RL run left; none of SFT's 6
    assert len(read_csv(tmp_path / "out" / "sweep.csv")) == 8


def test_an_unknown_key_names_the_variant_before_anything_runs(tmp_path, capsys):
    variants = [*LAMBDAS, {"name": "typo", "rl": ["rl.mgpo_lamda=2"]}]
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", variants)
    assert main(["sweep", path]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("ssp: error: variant typo (seed 0): ") and "rl.mgpo_lamda" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"baseline": "nope"}, "baseline: 'nope' is not a variant (variants: mgpo, grpo)"),
        ({"seeds": [0, 0]}, "seeds: a list of distinct seeds"),
        ({"grid": {"ppo": {"x": [1]}}}, "grid.ppo: unknown stage"),
        ({"include": ["missing.yaml"]}, "include missing.yaml: not found"),
    ],
)
def test_sweep_file_errors(tmp_path, extra, message):
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", LAMBDAS, **extra)
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_sweep(path)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["task.test_size=3"], "task"),
        (["eval.ks=[1,2]"], "eval.ks"),
        (["eval.sampling.temperature=1.0", "eval.greedy=false"], "eval.sampling, eval.greedy"),
    ],
)
def test_a_variant_scored_unlike_the_baseline_is_refused_before_anything_runs(tmp_path, overrides, named):
    """Both stages changed alike (so the pipeline itself is consistent), yet not comparable with the baseline."""
    variants = [*LAMBDAS, {"name": "other", "sft": overrides, "rl": overrides}]
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", variants)
    with pytest.raises(RecipeError, match=f"variant other: its {named} differ from the baseline mgpo's"):
        load_sweep(path)
    assert not (tmp_path / "out").exists()
    larger = ["task.train_size=96", "task.probe_size=3"]
    larger_training = [*LAMBDAS, {"name": "more", "sft": larger, "rl": larger}]
    load_sweep(write_sweep(tmp_path / "fine.yaml", tmp_path / "out", larger_training))  # the test split is unchanged


def test_a_variant_may_not_set_what_the_sweep_sets(tmp_path):
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", [{"name": "x", "sft": ["seed=3"]}])
    with pytest.raises(RecipeError, match="variant x: sft: seed is set by the sweep"):
        load_sweep(path)


def test_grid_and_include_expand_and_share(tmp_path):
    """A grid is every combination; an included file's variants are prefixed with its name, and a variant equal to
    another shares its runs."""
    assert [(v.name, v.sft, v.rl) for v in grid_variants({"sft": {"data.paths_per_problem": [1, 2]},
                                                          "rl": {"rl.mgpo_lambda": [0]}})] == [
        ("paths_per_problem=1,mgpo_lambda=0", ["data.paths_per_problem=1"], ["rl.mgpo_lambda=0"]),
        ("paths_per_problem=2,mgpo_lambda=0", ["data.paths_per_problem=2"], ["rl.mgpo_lambda=0"]),
    ]  # fmt: skip
    write_sweep(tmp_path / "lambda.yaml", tmp_path / "unused", [], grid={"rl": {"rl.mgpo_lambda": [1, 0]}})
    path = write_sweep(tmp_path / "all.yaml", tmp_path / "out", [{"name": "default"}], include=["lambda.yaml"])
    plan = load_sweep(path)
    assert [v.name for v in plan.variants] == ["default", "lambda/mgpo_lambda=1", "lambda/mgpo_lambda=0"]
    assert plan.baseline == "default"
    # default and lambda=1 are the same pipeline (mgpo_lambda 1 is the demo's): 2 seeds x (1 SFT + 2 RL) runs
    assert plan.pipelines[("default", 0)] == plan.pipelines[("lambda/mgpo_lambda=1", 0)]
    assert sorted(run.stage for run in plan.runs.values()) == ["rl"] * 4 + ["sft"] * 2
    assert [run.stage for run in plan.runs.values()][:3] == ["sft", "rl", "rl"]  # each SFT run, then its RL runs


def test_slurm_arrays_run_each_task_through_the_launch_scripts(tmp_path, fake_slurm):  # noqa: F811
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", LAMBDAS, seeds=[0])
    assert main(["sweep", path, "--slurm"]) == 0
    slurm = tmp_path / "out" / "slurm"
    sft_tasks = (slurm / "sft.tasks").read_text().splitlines()
    rl_tasks = (slurm / "rl.tasks").read_text().splitlines()
    assert len(sft_tasks) == 1 and len(rl_tasks) == 2
    submit = (slurm / "submit.sh").read_text()
    assert "sft=$(sbatch --parsable --job-name=ssp-sweep-sft --array=0-0" in submit
    assert "--array=0-1 --dependency=afterok:$sft" in submit and "--dependency=afterok:$rl" in submit
    assert not (tmp_path / "out" / "runs").exists()  # nothing ran
    env = {**fake_slurm, "SLURM_ARRAY_TASK_ID": "1"}
    result = subprocess.run(["bash", str(LAUNCH / "sweep_array.sbatch"), str(slurm / "rl.tasks")], env=env,
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    launched = [c for c in printed_commands(result.stdout) if c[:2] == ["accelerate", "launch"]]
    settings = dict(setting.split("=", 1) for setting in rl_tasks[1].split())
    assert len(launched) == 2  # the fake job's 2 nodes
    assert launched[0][-4:] == ["rl", settings["SSP_RL_RECIPE"], f"output_dir={settings['SSP_RL_OUTPUT']}",
                                f"model.name_or_path={settings['SSP_RL_MODEL']}"]  # fmt: skip
    recipe = yaml.safe_load(open(settings["SSP_RL_RECIPE"]).read())
    assert recipe["output_dir"] == settings["SSP_RL_OUTPUT"] and recipe["rl"]["mgpo_lambda"] == 0.0
    env["SLURM_ARRAY_TASK_ID"] = "2"
    result = subprocess.run(["bash", str(LAUNCH / "sweep_array.sbatch"), str(slurm / "rl.tasks")], env=env,
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "has no line for array task 2" in result.stderr


DOCUMENTED_RUNS = {  # (SFT runs, RL runs), the table in docs/ablations.md
    "paths.yaml": (9, 9), "selection.yaml": (6, 6), "fusion.yaml": (9, 9), "mgpo_lambda.yaml": (3, 12),
    "curriculum.yaml": (3, 6), "lora.yaml": (6, 6), "signal_switches.yaml": (3, 9), "all.yaml": (21, 39),
}  # fmt: skip
DOCUMENTED_REUSE = {"selection.yaml": 3, "fusion.yaml": 6, "all.yaml": 9}  # SFT runs reusing another's training


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "ablations").glob("*.yaml")), ids=lambda p: p.name)
def test_every_built_in_ablation_loads(path, monkeypatch):
    """Each file's every (variant, seed) recipe loads and checks, its baseline is among its variants, and it runs
    the SFT and RL runs docs/ablations.md's table says."""
    monkeypatch.chdir(REPO)
    plan = load_sweep(path)
    assert plan.baseline in [variant.name for variant in plan.variants] and plan.config.seeds == [0, 1, 2]
    assert len(plan.pipelines) == 3 * len(plan.variants)
    stages = [run.stage for run in plan.runs.values()]
    assert (stages.count("sft"), stages.count("rl")) == DOCUMENTED_RUNS[path.name]
    reusing = sum(run.trained_by is not None for run in plan.runs.values())
    assert reusing == DOCUMENTED_REUSE.get(path.name, 0)


def test_seed_interval_is_the_t_interval():
    values = [0.10, 0.14, 0.09]
    mean, low, high = seed_interval(values)
    half = 4.303 * statistics.stdev(values) / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((0.11, 0.11 - half, 0.11 + half))
    assert math.isnan(seed_interval([0.2])[1]) and t_quantile(100) == pytest.approx(1.95996, abs=1e-4)


def test_paired_bootstrap_agrees_with_the_analytic_standard_error():
    """Seeds on the same problems: the SE is that of the per-problem difference averaged over seeds, sd / sqrt(n);
    a problem's effect common to the seeds is not averaged away as if each seed had its own test set."""
    rng = random.Random(3)
    effect = [rng.choice([-1.0, -0.25, 0.0, 0.5, 1.0]) for _ in range(120)]  # shared by the seeds
    differences = [{f"p{i}": e + rng.choice([-0.25, 0.0, 0.25]) for i, e in enumerate(effect)} for _ in range(3)]
    averaged = [statistics.fmean(d[f"p{i}"] for d in differences) for i in range(120)]
    result = paired_bootstrap(differences, resamples=20000)
    assert result["mean"] == pytest.approx(statistics.fmean(averaged))
    assert result["se"] == pytest.approx(statistics.pstdev(averaged) / math.sqrt(120), rel=0.05)
    independent = math.sqrt(sum(statistics.pvariance(d.values()) / 120 for d in differences)) / 3
    assert result["se"] > 1.5 * independent  # what resampling each seed apart would have reported
    assert result["low"] < result["mean"] < result["high"]
    constant = paired_bootstrap([{"a": 0.25, "b": 0.25}, {"a": 0.25, "b": 0.25}])
    assert (constant["low"], constant["high"], constant["se"]) == pytest.approx((0.25, 0.25, 0.0))


def test_paired_bootstrap_resamples_seeds_apart_when_their_problems_differ():
    rng = random.Random(4)
    differences = [{f"{n}-{i}": rng.choice([-1.0, 0.0, 0.5, 1.0]) for i in range(n)} for n in (80, 120)]
    analytic = math.sqrt(sum(statistics.pvariance(d.values()) / len(d) for d in differences)) / len(differences)
    result = paired_bootstrap(differences, resamples=20000)
    assert result["mean"] == pytest.approx(statistics.fmean(statistics.fmean(d.values()) for d in differences))
    assert result["se"] == pytest.approx(analytic, rel=0.05)


def test_sweep_cli_dry_run(tmp_path, capsys):
    path = write_sweep(tmp_path / "sweep.yaml", tmp_path / "out", LAMBDAS)
    assert main(["sweep", path, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    expected = (
        "2 variants x 2 seeds = 4 pipelines; 2 SFT runs (0 reusing another's training) and 4 RL runs "
        "(sharing saves 2); 6 to run, 0 finished"
    )
    assert expected in printed
    assert not os.path.exists(tmp_path / "out")


def test_the_curriculum_ablation_trains_as_many_rl_steps_as_one_stage(monkeypatch):
    monkeypatch.chdir(REPO)
    plan = load_sweep(REPO / "recipes" / "ablations" / "curriculum.yaml")
    rl = {variant: plan.runs[runs[1]].recipe for (variant, seed), runs in plan.pipelines.items() if seed == 0}
    steps = {variant: sum(stage.max_steps for _, stage in signal_stages(recipe)) for variant, recipe in rl.items()}
    assert steps["curriculum"] == steps["one-stage"] == rl["one-stage"].rl.max_steps
