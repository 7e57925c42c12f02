"""`ssp rl RECIPE`: evaluate the initial model, then for each curriculum stage run GRPO with MGPO weighting,
save the stage's model and metrics under OUT/stages/<name>/, and evaluate it on the test split.

Every process trains; evaluations run once, on the main process.
"""

from __future__ import annotations

import gc
from pathlib import Path

import torch
from datasets import Dataset
from trl import GRPOConfig

from ssp.config import RLSection, resolve_stages
from ssp.cost import CostMeter
from ssp.data.loading import load_split, user_prompt
from ssp.evaluation.evaluate import evaluate_models
from ssp.generation.backends import vllm_available
from ssp.models import bf16_supported, count_parameters, load_model, load_tokenizer
from ssp.rewards import get_reward
from ssp.runs import cpu_deepspeed_backend, distributed_state, materialize_base_model, prepare_output_dir, write_json
from ssp.signal.report import print_signal_table
from ssp.signal.trainer import MGPOTrainer


def resolve_initial_model(name_or_path: str) -> str:
    """A model folder, a hub id, or a spectrum run folder (its merged `spectrum/` model is used)."""
    spectrum = Path(name_or_path) / "spectrum"
    return str(spectrum) if (spectrum / "config.json").is_file() else name_or_path


def rl_dataset(rows: list[dict], template: str, system_prompt: str | None) -> Dataset:
    """Prompt rows for GRPOTrainer; every other column reaches the reward functions as a keyword argument."""
    # Code rows carry what the code reward runs; every record gets the same columns (None where a row has none).
    code_columns = [column for column in ("tests", "prelude") if any(column in row for row in rows)]
    records = []
    for row in rows:
        record = {"prompt": user_prompt(row["problem"], template, system_prompt), "answer": row["answer"]}
        record["domain"] = row["domain"]
        record.update({column: row.get(column) for column in code_columns})
        records.append(record)
    return Dataset.from_list(records)


def build_grpo_config(rl: RLSection, stage_dir: Path, run_name: str, seed: int) -> GRPOConfig:
    """TRL's config for one stage, built from the stage's settings."""
    use_vllm = vllm_available() if rl.use_vllm is None else rl.use_vllm
    return GRPOConfig(
        output_dir=str(stage_dir / "checkpoints"),
        max_steps=rl.max_steps,
        learning_rate=rl.learning_rate,
        lr_scheduler_type=rl.lr_scheduler_type,
        warmup_steps=rl.warmup_ratio,  # a float < 1 is a fraction of the total steps
        weight_decay=rl.weight_decay,
        per_device_train_batch_size=rl.per_device_train_batch_size,
        gradient_accumulation_steps=rl.gradient_accumulation_steps,
        num_generations=rl.num_generations,
        max_completion_length=rl.max_completion_length,
        temperature=rl.temperature,
        top_p=rl.top_p,
        top_k=rl.top_k,
        beta=rl.beta,
        epsilon=rl.epsilon,
        loss_type=rl.loss_type,
        scale_rewards=rl.scale_rewards,
        mask_truncated_completions=rl.mask_truncated_completions,
        reward_weights=list(rl.rewards.values()),
        use_vllm=use_vllm,
        vllm_mode=rl.vllm_mode,
        bf16=bf16_supported() if rl.bf16 is None else rl.bf16,
        activation_checkpointing=rl.gradient_checkpointing,
        logging_steps=rl.logging_steps,
        save_strategy="steps" if rl.save_every else "no",
        save_steps=rl.save_every or 500,
        save_only_model=True,
        report_to=rl.report_to or "none",
        run_name=run_name,
        deepspeed=rl.deepspeed,
        seed=seed,
        ddp_backend=cpu_deepspeed_backend(),
        dataloader_pin_memory=torch.cuda.is_available(),
        log_completions=False,
        **rl.trl,
    )


def run_signal(recipe) -> dict | None:
    """Run the signal stage; returns the summary on the main process, None on the others."""
    state = distributed_state()
    meter = CostMeter.from_config(recipe.cost)
    stages = resolve_stages(recipe.rl)
    data = recipe.data
    stage_rows = {}
    for index, (name, rl) in enumerate(stages):
        key = f"rl.stages.{index}.data" if recipe.rl.stages else "rl.data"
        stage_rows[name] = load_split(rl.data, recipe.task, key)
    test_rows = load_split(data.test, recipe.task, "data.test")
    out = prepare_output_dir(recipe, state)
    model_path = resolve_initial_model(recipe.model.name_or_path)
    if model_path == "tiny":
        model_path = materialize_base_model(recipe, stage_rows[stages[0][0]], out, state)

    def evaluate(name: str, path: str) -> dict:
        entry = evaluate_models({name: Path(path)}, test_rows, recipe.eval, recipe.data, recipe.seed)[name]
        meter.tokens_generated += entry["tokens_generated"]
        return entry

    evaluations: dict[str, dict] = {}
    if state.is_main_process and recipe.eval.base:
        with meter.phase("eval"):
            evaluations["initial"] = evaluate("initial", model_path)
    state.wait_for_everyone()

    stage_results = {}
    for name, rl in stages:
        stage_dir = out / "stages" / name
        tokenizer = load_tokenizer(model_path, recipe.model.chat_template)
        model = load_model(model_path, recipe.model.dtype, config_overrides=recipe.model.config_overrides)
        parameters = count_parameters(model)  # before ZeRO-3 partitions the parameters
        trainer = MGPOTrainer(
            model=model,
            reward_funcs=[get_reward(reward) for reward in rl.rewards],
            args=build_grpo_config(rl, stage_dir, f"{Path(recipe.output_dir).name}-{name}", recipe.seed),
            train_dataset=rl_dataset(stage_rows[name], data.prompt_template, data.system_prompt),
            processing_class=tokenizer,
            mgpo_lambda=rl.mgpo_lambda,
            correctness_reward=rl.correctness_reward,
        )
        with meter.phase(f"train:{name}"):
            trainer.train()
        trainer.save_model(str(stage_dir / "model"))
        meter.processes = trainer.accelerator.num_processes
        meter.distributed_type = trainer.accelerator.distributed_type.name
        meter.tokens_generated += trainer.tokens_generated
        meter.add_training(trainer.tokens_trained, parameters)
        tokens = {"tokens_generated": trainer.tokens_generated, "tokens_trained": trainer.tokens_trained}
        log_history = trainer.state.log_history
        del trainer, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        model_path = str(stage_dir / "model")
        if state.is_main_process:
            tokenizer.save_pretrained(model_path)
            write_json(stage_dir / "metrics.json", {"log_history": log_history, **tokens})
            with meter.phase(f"eval:{name}"):
                evaluation = evaluate(name, model_path)
            write_json(stage_dir / "eval.json", evaluation)
            evaluations[name] = evaluation
            stage_results[name] = {"model": model_path, **tokens, "seconds": meter.phases[f"train:{name}"]}
        state.wait_for_everyone()

    if not state.is_main_process:
        return None
    cost = meter.record(out / "cost.json")
    summary = {"evaluations": evaluations, "stages": stage_results, "cost": cost, "ks": recipe.eval.ks}
    write_json(out / "signal.json", summary)
    print_signal_table(evaluations, recipe.eval.ks)
    return summary
