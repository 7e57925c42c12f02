"""`ssp rl RECIPE`: evaluate the initial model, then for each curriculum stage run GRPO with MGPO weighting,
save the stage's model and metrics under OUT/stages/<name>/, and evaluate it on the test split. With
`rl.difficulty_filter` a stage first drops the prompts its initial model always or never solves
(`ssp.signal.difficulty`).

Every process trains and evaluates (each its share of the prompts, `ssp.generation.parallel`); the main process
alone writes the results.
"""

from __future__ import annotations

import shutil
import sys
from functools import partial
from pathlib import Path

import torch
from datasets import Dataset

from ssp.config import RecipeError, RLSection
from ssp.cost import CostMeter
from ssp.data.loading import chat_prompt, load_split
from ssp.evaluation.evaluate import evaluate_models
from ssp.files import read_json, replace_dir, staging_path, write_json
from ssp.generation.vllm_cpu import prepare_vllm_cpu
from ssp.lora import check_target_modules, merge_adapter_folder, peft_config, target_errors
from ssp.models import count_parameters, load_model, load_tokenizer
from ssp.resume import (
    TrainingCheckpoints,
    discard_partial_saves,
    drop_training_states,
    latest_state,
    read_extra_state,
    result_of,
    step_of,
)
from ssp.rewards import get_reward
from ssp.runs import (
    distributed_state,
    free_device_memory,
    materialize_base_model,
    planned_positions,
    prepare_output_dir,
)
from ssp.signal.config import build_mgpo_config, check_stage_trl, uses_vllm
from ssp.signal.curriculum import resolve_stages, stage_key
from ssp.signal.difficulty import COUNTS, filter_stage
from ssp.signal.report import print_signal_table
from ssp.signal.trainer import MGPOTrainer


def resolve_initial_model(name_or_path: str) -> str:
    """A model folder, a hub id, or a spectrum run folder (its merged `spectrum/` model is used)."""
    spectrum = Path(name_or_path) / "spectrum"
    return str(spectrum) if (spectrum / "config.json").is_file() else name_or_path


def rl_dataset(rows: list[dict], system_prompt: str | None) -> Dataset:
    """Prompt rows for GRPOTrainer; every other column reaches the reward functions as a keyword argument, and
    `correctness_reward` names the reward whose score is the row's correctness for MGPO's p."""
    # Code rows carry what the code reward runs; every record gets the same columns (None where a row has none).
    code_columns = [column for column in ("tests", "prelude") if any(column in row for row in rows)]
    records = []
    for row in rows:
        record = {"prompt": chat_prompt(row["prompt"], system_prompt), "answer": row["answer"]}
        record.update(domain=row["domain"], correctness_reward=row["reward"])
        record.update({column: row.get(column) for column in code_columns})
        records.append(record)
    return Dataset.from_list(records)


def check_context_budget(recipe, stages: list[tuple[str, RLSection]], positions: int | None) -> None:
    """Every stage's completions and the evaluation's must fit the context the model will have (before any work)."""
    if positions is None:
        return
    for index, (name, rl) in enumerate(stages):
        if rl.max_completion_length >= positions:
            key = stage_key(recipe.rl, index)
            raise RecipeError(
                f"{key}.max_completion_length: {rl.max_completion_length:,} tokens plus the prompt do not fit the "
                f"model's context of {positions:,} positions (stage {name}); raise "
                f"model.context.max_position_embeddings"
            )
    if recipe.eval.sampling.max_new_tokens >= positions:
        raise RecipeError(
            f"eval.sampling.max_new_tokens: {recipe.eval.sampling.max_new_tokens:,} new tokens plus the prompt do not "
            f"fit the model's context of {positions:,} positions; raise model.context.max_position_embeddings"
        )


def token_counters(trainer: MGPOTrainer) -> dict:
    return {"tokens_generated": trainer.tokens_generated, "tokens_trained": trainer.tokens_trained}


def train_stage(
    recipe, name: str, rl: RLSection, rows: list[dict], model_path: str, out: Path, meter: CostMeter
) -> dict:
    """One curriculum stage's GRPO with MGPO weighting from `model_path` into OUT/stages/<name>/model (written
    staged, so it is complete when present), resumed from the stage's newest training state (`save_every`) when an
    interrupted run left one. Returns the stage's metrics, also written to OUT/stages/<name>/metrics.json."""
    state = distributed_state()
    stage_dir = out / "stages" / name
    target = stage_dir / "model"
    if state.is_main_process:
        discard_partial_saves(stage_dir / "checkpoints")
        if staging_path(target).exists():  # a save of the stage's model that was cut short
            shutil.rmtree(staging_path(target))
    state.wait_for_everyone()
    resume_from = latest_state(stage_dir / "checkpoints")
    tokenizer = load_tokenizer(model_path)
    model = load_model(model_path, recipe.model.dtype)
    parameters = count_parameters(model)  # before ZeRO-3 partitions the parameters
    if uses_vllm(rl) and not torch.cuda.is_available():
        prepare_vllm_cpu()  # vLLM's CPU build; see ssp.generation.vllm_cpu
    args = build_mgpo_config(rl, stage_dir, f"{Path(recipe.output_dir).name}-{name}", recipe.seed,
                             recipe.distributed_timeout_minutes, model_path)  # fmt: skip
    with target_errors():  # LoRA (`model.lora`): TRL wraps the model with the adapters
        trainer = MGPOTrainer(
            model=model,
            reward_funcs=[get_reward(reward) for reward in rl.rewards],
            args=args,
            train_dataset=rl_dataset(rows, recipe.data.system_prompt),
            processing_class=tokenizer,
            peft_config=peft_config(recipe.model.lora),
        )

    # The token counters live on the trainer, not in transformers' state: they travel with each training state.
    trainer.add_callback(
        TrainingCheckpoints(state, extra_state=partial(token_counters, trainer), after_save=meter.save)
    )
    if resume_from is not None:
        vars(trainer).update(read_extra_state(resume_from))
        if state.is_main_process:
            print(f"resuming RL stage {name} from {resume_from} (step {step_of(resume_from.name)})", file=sys.stderr)
    with meter.phase(f"train:{name}"):
        trainer.train(resume_from_checkpoint=None if resume_from is None else str(resume_from))
    trainer.save_model(str(staging_path(target)))  # every process takes part under DeepSpeed
    metrics = {"log_history": trainer.state.log_history, **token_counters(trainer), "parameters": parameters}
    metrics.update(processes=trainer.accelerator.num_processes,
                   distributed_type=trainer.accelerator.distributed_type.name)  # fmt: skip
    trainer.accelerator.free_memory()
    del trainer, model
    free_device_memory()
    state.wait_for_everyone()
    if state.is_main_process:
        tokenizer.save_pretrained(str(staging_path(target)))
        if recipe.model.lora.enabled:  # TRL saved the adapter: the stage's model is its start with it merged in
            merge_adapter_folder(staging_path(target), model_path, recipe.model.dtype)
        replace_dir(staging_path(target), target)
        write_json(stage_dir / "metrics.json", metrics)
        drop_training_states(stage_dir / "checkpoints")
    state.wait_for_everyone()  # the model is on disk before every process loads it
    return metrics


def signal_stages(recipe) -> list[tuple[str, RLSection]]:
    """The curriculum of `recipe` (`ssp.signal.curriculum`), each stage's `trl` keys checked against TRL's
    GRPOConfig: everything about the RL section that can be checked before any work."""
    stages = resolve_stages(recipe.rl)
    for index, (_, rl) in enumerate(stages):
        check_stage_trl(rl, stage_key(recipe.rl, index))
    return stages


def run_signal(recipe) -> dict | None:
    """Run the signal stage; returns the summary on the main process, None on the others. Rerun on the same output
    folder, it continues an interrupted run: finished stages are skipped, the current one resumes (`ssp.resume`)."""
    state = distributed_state(recipe.distributed_timeout_minutes)
    meter = CostMeter.from_config(recipe.cost)
    stages = signal_stages(recipe)
    data = recipe.data
    stage_rows = {}
    for index, (name, rl) in enumerate(stages):
        key = f"{stage_key(recipe.rl, index)}.data"
        stage_rows[name] = load_split(rl.data, recipe.task, key, data.prompt_template)
    test_rows = load_split(data.test, recipe.task, "data.test", data.prompt_template)
    initial = resolve_initial_model(recipe.model.name_or_path)
    check_target_modules(recipe.model.lora, initial, recipe.model.tiny)
    check_context_budget(recipe, stages, planned_positions(recipe, initial))
    out, _ = prepare_output_dir(recipe, state)
    if state.is_main_process:
        meter.resume(out / "cost.json")
    # The initial model with the recipe's context and stop tokens in its files (TRL's vLLM engine reads them there).
    model_path = materialize_base_model(recipe, stage_rows[stages[0][0]], out, state, source=initial)

    def evaluate(label: str, path: str, record: Path) -> dict:
        """The test-split evaluation of one model, written to `record`; one an interrupted run wrote is reused."""

        def work() -> dict:
            with meter.phase("eval" if label == "initial" else f"eval:{label}"):
                return evaluate_models({label: Path(path)}, test_rows, recipe.eval, data.system_prompt,
                                       recipe.seed)[label]  # fmt: skip

        entry = result_of(record, work, state.is_main_process)
        meter.add_generation(entry["tokens_generated"], meter.parameters)
        return entry

    evaluations: dict[str, dict] = {}
    if recipe.eval.base:
        evaluations["initial"] = evaluate("initial", model_path, out / "initial_eval.json")

    stage_results = {}
    for index, (name, rl) in enumerate(stages):
        stage_dir = out / "stages" / name
        rows, filtered = stage_rows[name], None
        if rl.difficulty_filter:  # only the prompts the stage's initial model solves sometimes (stages/<name>/)
            rows, filtered = filter_stage(recipe, stage_key(recipe.rl, index), name, rl, rows, model_path,
                                          stage_dir, meter)  # fmt: skip
        if (stage_dir / "metrics.json").is_file():  # trained by an interrupted run (its model is complete)
            metrics = read_json(stage_dir / "metrics.json")
        else:
            metrics = train_stage(recipe, name, rl, rows, model_path, out, meter)
        meter.parameters = metrics["parameters"]
        meter.processes, meter.distributed_type = metrics["processes"], metrics["distributed_type"]
        meter.add_generation(metrics["tokens_generated"], meter.parameters)
        meter.add_training(metrics["tokens_trained"], meter.parameters)
        if filtered is not None:  # counted here: the model's size is known once the stage has loaded it
            meter.add_generation(filtered["tokens_generated"], meter.parameters)
        model_path = str(stage_dir / "model")
        evaluations[name] = evaluate(name, model_path, stage_dir / "eval.json")
        tokens = {key: metrics[key] for key in ("tokens_generated", "tokens_trained")}
        stage_results[name] = {"model": model_path, **tokens, "seconds": meter.phases[f"train:{name}"]}
        if filtered is not None:
            stage_results[name]["difficulty"] = {key: filtered[key] for key in COUNTS}

    if not state.is_main_process:
        return None
    cost = meter.record(out / "cost.json")
    summary = {"evaluations": evaluations, "stages": stage_results, "cost": cost, "ks": recipe.eval.ks}
    write_json(out / "signal.json", summary)
    print_signal_table(evaluations, recipe.eval.ks)
    return summary
