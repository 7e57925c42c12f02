"""`ssp sft RECIPE`: multi-path SFT -> per-subdomain pass@k probing -> checkpoint selection -> fusion -> report.

Every process trains, probes and evaluates (each its share of the prompts, `ssp.generation.parallel`); the main
process alone writes the results and merges the selected checkpoints.
"""

from __future__ import annotations

import dataclasses
import sys
from functools import partial
from pathlib import Path

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from trl import SFTConfig, SFTTrainer

from ssp.config import RecipeError, SFTSection
from ssp.cost import CostMeter
from ssp.data.loading import data_summary, load_split, sft_examples
from ssp.evaluation.evaluate import evaluate_model, evaluate_models
from ssp.files import read_json, write_json
from ssp.generation.backends import resolve_backend
from ssp.lora import check_target_modules, merge_adapter, peft_config, target_errors
from ssp.models import bf16_supported, count_parameters, load_model, load_tokenizer
from ssp.resume import (
    TrainingCheckpoints,
    discard_partial_saves,
    drop_training_states,
    latest_state,
    result_of,
    step_of,
)
from ssp.runs import (
    check_trl_keys,
    checkpointing_args,
    distributed_state,
    free_device_memory,
    materialize_base_model,
    planned_positions,
    prepare_output_dir,
    trainer_distributed_args,
)
from ssp.spectrum.fusion import merge_models
from ssp.spectrum.report import print_probe_table, write_spectrum_report
from ssp.spectrum.selection import best_single_checkpoint, metric_key, select_checkpoints


def check_context_budget(recipe, positions: int | None) -> None:
    """Token budgets must fit the context the models will have; a probing budget shorter than what SFT trains on
    is allowed but said, with the numbers. Runs before anything is written."""
    if positions is None:
        return
    sft = recipe.sft
    if sft.max_length > positions:
        raise RecipeError(
            f"sft.max_length: {sft.max_length:,} tokens do not fit the model's context of {positions:,} positions; "
            f"raise model.context.max_position_embeddings (and rope_theta or rope_scaling) or lower sft.max_length"
        )
    for section in ("probe", "eval"):
        budget = getattr(recipe, section).sampling.max_new_tokens
        if budget >= positions:
            raise RecipeError(
                f"{section}.sampling.max_new_tokens: {budget:,} new tokens plus the prompt do not fit the model's "
                f"context of {positions:,} positions; raise model.context.max_position_embeddings or lower it"
            )
    if recipe.probe.sampling.max_new_tokens < sft.max_length and distributed_state().is_main_process:
        print(
            f"warning: probing samples at most {recipe.probe.sampling.max_new_tokens:,} new tokens but SFT trains "
            f"on sequences of up to {sft.max_length:,}: solutions longer than the probing budget are cut and scored "
            f"wrong (probe.sampling.max_new_tokens)",
            file=sys.stderr,
        )


def sft_settings(recipe, checkpoints_dir: Path) -> dict:
    """The SFTConfig fields ssp sets from the recipe's `sft` section and its own choices; `sft.trl` adds others."""
    sft = recipe.sft
    return dict(
        output_dir=str(checkpoints_dir),
        max_steps=sft.max_steps,
        num_train_epochs=sft.num_train_epochs,
        learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler_type,
        warmup_steps=sft.warmup_ratio,  # transformers 5: a float < 1 is a fraction of the total steps
        weight_decay=sft.weight_decay,
        per_device_train_batch_size=sft.per_device_train_batch_size,
        gradient_accumulation_steps=sft.gradient_accumulation_steps,
        max_length=sft.max_length,
        completion_only_loss=True,
        save_strategy="steps",
        save_steps=sft.save_every,
        save_only_model=False,  # the optimizer, scheduler and RNG states too: a killed run resumes (ssp.resume)
        logging_steps=sft.logging_steps,
        bf16=bf16_supported() if sft.bf16 is None else sft.bf16,
        **checkpointing_args(sft.gradient_checkpointing),
        report_to=sft.report_to or "none",
        run_name=Path(recipe.output_dir).name,
        deepspeed=sft.deepspeed,
        seed=recipe.seed,
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=torch.cuda.is_available(),
        **trainer_distributed_args(recipe.distributed_timeout_minutes),
    )


def build_sft_config(recipe, checkpoints_dir: Path) -> SFTConfig:
    """TRL's config, built here from the recipe's `sft` section (never stored in the recipe)."""
    return SFTConfig(**sft_settings(recipe, checkpoints_dir), **recipe.sft.trl)


def probe_checkpoints(recipe, checkpoints: list[Path], probe_rows: list[dict], meter: CostMeter, out: Path) -> dict:
    """pass@k of every checkpoint on every subdomain's probing set: checkpoint -> subdomain -> metrics. Every
    process takes part; each checkpoint's samples are seeded alike (`name="probe"`), so checkpoints are compared
    on the same draws. Each checkpoint's result is written to OUT/probe/<checkpoint>.json as it finishes; one found
    there (an interrupted run's) is not probed again."""
    state = distributed_state()
    results = {}
    for checkpoint in tqdm(checkpoints, desc="probing checkpoints", disable=not state.is_main_process):

        def probe(checkpoint=checkpoint) -> dict:
            with meter.phase("probe"):
                evaluation = evaluate_model(
                    checkpoint,
                    probe_rows,
                    recipe.probe.sampling,
                    recipe.probe.ks,
                    seed=recipe.seed,
                    name="probe",
                    system_prompt=recipe.data.system_prompt,
                    backend=recipe.probe.backend,
                    desc=f"probe {checkpoint.name}",
                )
            return {key: evaluation[key] for key in ("domains", "tokens_generated")}

        probed = result_of(out / "probe" / f"{checkpoint.name}.json", probe, state.is_main_process)
        meter.add_generation(probed["tokens_generated"], meter.parameters)
        results[checkpoint.name] = probed["domains"]
    return results


def train_sft(recipe, base_path: str, examples: list[dict], out: Path, meter: CostMeter) -> dict:
    """Multi-path SFT into OUT/checkpoints/step-N, resumed from the newest training state an interrupted run left
    (`ssp.resume`); OUT/train.json records a finished training, which a rerun does not repeat."""
    state = distributed_state()
    checkpoints_dir = out / "checkpoints"
    if (out / "train.json").is_file():
        return read_json(out / "train.json")
    if state.is_main_process:
        discard_partial_saves(checkpoints_dir)
    state.wait_for_everyone()
    resume_from = latest_state(checkpoints_dir)
    tokenizer = load_tokenizer(base_path)
    model = load_model(base_path, recipe.model.dtype)
    parameters = count_parameters(model)  # the whole model's, before peft adds adapters: what each step runs
    lora = peft_config(recipe.model.lora)
    # With LoRA, TRL saves the adapter: each step-N is the base with it merged in, a plain model folder.
    merge = None if lora is None else partial(merge_adapter, base_path=base_path, dtype=recipe.model.dtype)
    with target_errors():
        trainer = SFTTrainer(
            model=model,
            args=build_sft_config(recipe, checkpoints_dir),
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            callbacks=[TrainingCheckpoints(state, model_folders=True, after_save=meter.save, merge_adapter=merge)],
            peft_config=lora,
        )
    if resume_from is not None and state.is_main_process:
        print(f"resuming SFT from {resume_from} (step {step_of(resume_from.name)})", file=sys.stderr)
    with meter.phase("train"):
        trainer.train(resume_from_checkpoint=None if resume_from is None else str(resume_from))
    trained = {
        "tokens_trained": trainer.state.num_input_tokens_seen,
        "steps": trainer.state.global_step,
        "parameters": parameters,
        "processes": trainer.accelerator.num_processes,
        "distributed_type": trainer.accelerator.distributed_type.name,
    }
    if lora is not None:
        # peft's count reads DeepSpeed's sizes of partitioned parameters (ZeRO-3), where `numel()` is 0
        trained["trainable_parameters"] = trainer.model.get_nb_trainable_parameters()[0]
    trainer.accelerator.free_memory()  # DeepSpeed's engine and optimizer states, before the models to probe load
    del trainer, model
    free_device_memory()
    state.wait_for_everyone()
    if state.is_main_process:
        write_json(out / "train.json", trained)
        drop_training_states(checkpoints_dir)
    state.wait_for_everyone()
    return trained


def check_fusion_weights(weights: dict[str, float], probe_domains: set[str], merge: str = "uniform") -> None:
    """Explicit merge weights must name probed subdomains and give one of them a positive weight; they replace the
    uniform merge, so they do not go with another `fusion.merge`."""
    if weights and merge != "uniform":
        raise RecipeError(f"fusion.weights: explicit weights replace the uniform merge; fusion.merge is {merge}")
    unknown = sorted(set(weights) - probe_domains)
    if unknown:
        known = ", ".join(sorted(probe_domains))
        raise RecipeError(f"fusion.weights.{unknown[0]}: not a probed subdomain (probed: {known})")
    if weights and not any(weights.get(d, 0.0) > 0 for d in probe_domains):
        raise RecipeError("fusion.weights: every probed subdomain has weight 0")


def merge_weights(fusion, selection: dict[str, dict]) -> tuple[list[float], str | None]:
    """The merge weight of each subdomain's specialist (sorted subdomains, not normalised), and a note when `score`
    falls back to uniform. `none` merges nothing: its weights are 0 (the spectrum model is the best single one)."""
    domains = sorted(selection)
    if fusion.weights:
        return [fusion.weights.get(d, 0.0) for d in domains], None
    if fusion.merge == "none":
        return [0.0] * len(domains), None
    if fusion.merge == "score":
        scores = [selection[d]["score"] for d in domains]
        if sum(scores) > 0:
            return scores, None
        note = "fusion.merge score: every selected specialist scored 0, so the merge is uniform"
        return [1.0] * len(domains), note
    return [1.0] * len(domains), None


def run_spectrum(recipe) -> dict | None:
    """Run the spectrum stage; returns the summary on the main process, None on the others. Rerun on the same output
    folder, it continues an interrupted run: every step below skips the work it finds complete (`ssp.resume`)."""
    state = distributed_state(recipe.distributed_timeout_minutes)
    meter = CostMeter.from_config(recipe.cost)  # an unpriced device fails here, before any work
    check_trl_keys(recipe.sft.trl, "sft.trl", SFTConfig, SFTSection, sft_settings(recipe, Path()))
    data = recipe.data
    train_rows = load_split(data.train, recipe.task, "data.train", data.prompt_template, for_training=True)
    probe_rows = load_split(data.probe, recipe.task, "data.probe", data.prompt_template)
    test_rows = load_split(data.test, recipe.task, "data.test", data.prompt_template)
    check_fusion_weights(recipe.fusion.weights, {row["domain"] for row in probe_rows}, recipe.fusion.merge)
    check_target_modules(recipe.model.lora, recipe.model.name_or_path, recipe.model.tiny)
    check_context_budget(recipe, planned_positions(recipe, recipe.model.name_or_path))
    out, _ = prepare_output_dir(recipe, state)
    if state.is_main_process:
        meter.resume(out / "cost.json")

    # --- multi-path SFT ------------------------------------------------------------------------------------
    base_path = materialize_base_model(recipe, train_rows, out, state)  # the context and stop tokens on disk
    examples = sft_examples(train_rows, data.paths_per_problem, data.system_prompt)
    if state.is_main_process:
        write_json(out / "data.json", data_summary(train_rows, probe_rows, test_rows, len(examples)))
    trained = train_sft(recipe, base_path, examples, out, meter)
    meter.parameters = trained["parameters"]
    meter.processes, meter.distributed_type = trained["processes"], trained["distributed_type"]
    meter.add_training(trained["tokens_trained"], meter.parameters)

    # --- domain-aware diversity probing, on every process ------------------------------------------------------
    checkpoints_dir = out / "checkpoints"
    checkpoints = sorted(checkpoints_dir.glob("step-*"), key=lambda p: step_of(p.name))
    probe = probe_checkpoints(recipe, checkpoints, probe_rows, meter, out)
    fusion = recipe.fusion
    key = metric_key(fusion.metric, fusion.k)
    selection = select_checkpoints(probe, key)
    domains = sorted(selection)
    weights, note = merge_weights(fusion, selection)
    total = sum(weights) or 1.0  # `none`: every weight is 0
    for domain, weight in zip(domains, weights, strict=True):
        selection[domain]["weight"] = weight / total
    best_single = best_single_checkpoint(probe, key)
    # `none`: the spectrum model is the best single checkpoint, copied, so evaluation and RL read it as before.
    sources = [best_single] if fusion.merge == "none" else [selection[d]["checkpoint"] for d in domains]
    source_weights = [1.0] if fusion.merge == "none" else weights

    # --- selection and fusion, on the main process ----------------------------------------------------------------
    if state.is_main_process:
        sampling = dataclasses.asdict(recipe.probe.sampling)
        backend = resolve_backend(recipe.probe.backend)
        record = {"metric": key, "ks": recipe.probe.ks, "sampling": sampling, "backend": backend, "checkpoints": probe}
        write_json(out / "probe.json", record)
        print_probe_table(probe, recipe.probe.ks)
        if note is not None:
            print(f"warning: {note}", file=sys.stderr)
        chosen = {"metric": key, "merge": fusion.merge, "subdomains": selection, "best_single": best_single}
        write_json(out / "selection.json", chosen | ({} if note is None else {"merge_note": note}))
        if not (out / "spectrum").is_dir():  # complete when present: merged under a staging name
            with meter.phase("fusion"):
                merge_models([checkpoints_dir / name for name in sources], source_weights, out / "spectrum")
    state.wait_for_everyone()

    # --- held-out evaluation, on every process ----------------------------------------------------------------
    models = {"base": Path(base_path)} if recipe.eval.base else {}
    models.update({"best_single": checkpoints_dir / best_single, "spectrum": out / "spectrum"})
    test = {}
    for label, model_dir in models.items():

        def evaluate(label=label, model_dir=model_dir) -> dict:
            with meter.phase("eval"):
                return evaluate_models({label: model_dir}, test_rows, recipe.eval, data.system_prompt,
                                       recipe.seed)[label]  # fmt: skip

        test[label] = result_of(out / "eval" / f"{label}.json", evaluate, state.is_main_process)
        meter.add_generation(test[label]["tokens_generated"], meter.parameters)
    if not state.is_main_process:
        return None
    test["best_single"]["checkpoint"] = best_single
    sampling = dataclasses.asdict(recipe.eval.sampling)
    write_json(out / "eval.json", {"ks": recipe.eval.ks, "sampling": sampling, "models": test})
    cost = meter.record(out / "cost.json")
    write_spectrum_report(out / "spectrum_report.md", probe, selection, test, recipe, cost,
                          merge_note=note, best_single=best_single)  # fmt: skip
    return {"probe": probe, "selection": selection, "test": test, "cost": cost}
