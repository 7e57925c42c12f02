"""`model.lora`: LoRA through peft in both stages, every saved model a plain folder with the adapter merged in."""

import shutil
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from test_mgpo_trainer import even_length, short
from transformers import AutoModelForCausalLM

from ssp import resume
from ssp.cli import main
from ssp.config import LoraConfig, RecipeError, RLSection, TinyModelSpec, load_recipe
from ssp.cost import CostMeter
from ssp.data.loading import load_split, sft_examples
from ssp.lora import check_target_modules, merge_adapter, merge_adapter_folder, peft_config
from ssp.models import load_model, load_tokenizer
from ssp.signal.config import build_mgpo_config
from ssp.signal.trainer import MGPOTrainer
from ssp.spectrum.fusion import merge_models
from ssp.spectrum.run import train_sft

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "sft.yaml"
TINY = TinyModelSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
ADAPTER_FILES = {"adapter_model.safetensors", "adapter_config.json", "README.md"}
LORA = LoraConfig(enabled=True, r=4, alpha=8.0, dropout=0.0)


def test_lora_off_is_full_fine_tuning_and_on_maps_every_key():
    assert peft_config(LoraConfig()) is None
    config = peft_config(LoraConfig(enabled=True, r=8, alpha=16.0, dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16.0, 0.1)
    assert config.target_modules == {"q_proj", "v_proj"} and config.task_type == "CAUSAL_LM"
    check_target_modules(LoraConfig(target_modules=["nope"]), "tiny", TINY)  # off: nothing is checked


@pytest.mark.parametrize("model", ["tiny", "qwen"])
def test_target_modules_are_checked_against_the_model(model, qwen_model_dir):
    name = "tiny" if model == "tiny" else str(qwen_model_dir)
    for targets in ("all-linear", ["q_proj", "v_proj"], ["self_attn.o_proj", "down_proj"], r".*\.mlp\.up_proj"):
        check_target_modules(LoraConfig(enabled=True, target_modules=targets), name, TINY)
    with pytest.raises(RecipeError, match=r"^model\.lora\.target_modules: 'qproj' names no module of .*q_proj"):
        check_target_modules(LoraConfig(enabled=True, target_modules=["q_proj", "qproj"]), name, TINY)
    with pytest.raises(RecipeError, match=r"^model\.lora\.target_modules: Target modules nope\.\* not found"):
        check_target_modules(LoraConfig(enabled=True, target_modules="nope.*"), name, TINY)


def test_a_bad_target_is_one_error_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sft", str(DEMO), f"output_dir={out}", "model.lora.enabled=true", "model.lora.target_modules=[q_prj]"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("ssp: error: model.lora.target_modules: 'q_prj' names no module")
    assert not out.exists()


def lora_recipe(out: Path, *extra: str):
    return load_recipe(DEMO, [f"output_dir={out}", "task.train_size=16", "sft.max_steps=4", "sft.save_every=2",
                              "sft.per_device_train_batch_size=4", "model.lora.enabled=true", "model.lora.r=4",
                              *extra])  # fmt: skip


def run_sft(recipe, base: Path, out: Path) -> dict:
    rows = load_split(recipe.data.train, recipe.task, "data.train", recipe.data.prompt_template, for_training=True)
    examples = sft_examples(rows, recipe.data.paths_per_problem, recipe.data.system_prompt)
    return train_sft(recipe, str(base), examples, out, CostMeter.from_config(recipe.cost))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("lora") / "run"
    recipe = lora_recipe(out, "model.lora.target_modules=[q_proj,v_proj]")
    return out, run_sft(recipe, tiny_model_dir, out)


def test_lora_sft_checkpoints_are_plain_models_with_the_adapter_merged_in(lora_run, tiny_model_dir):
    out, trained = lora_run
    assert trained["parameters"] == sum(p.numel() for p in load_model(tiny_model_dir).parameters())
    assert trained["trainable_parameters"] == 2 * 2 * 4 * (32 + 32)  # 2 layers x (q, v) x r 4 x (in + out)
    base = load_file(tiny_model_dir / "model.safetensors")
    for step in ("step-2", "step-4"):
        folder = out / "checkpoints" / step
        assert not ADAPTER_FILES & {p.name for p in folder.iterdir()}
        model = AutoModelForCausalLM.from_pretrained(folder)  # an ordinary model: no peft wrapper, no adapter
        assert not any("lora" in name for name, _ in model.named_parameters())
        weights = load_file(folder / "model.safetensors")
        assert weights.keys() == base.keys()
        for name, value in weights.items():
            targeted = name.endswith(("q_proj.weight", "v_proj.weight"))
            assert torch.equal(value, base[name]) != targeted, name  # only the adapted layers moved
    assert not list((out / "checkpoints").glob("state-*"))  # a finished training keeps no state


def test_an_interrupted_lora_run_resumes_to_the_same_models(lora_run, tiny_model_dir, tmp_path, monkeypatch):
    reference, _ = lora_run
    out = tmp_path / "run"
    recipe = lora_recipe(out, "model.lora.target_modules=[q_proj,v_proj]")
    original = resume.TrainingCheckpoints.on_save

    def crash_after_first_save(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        raise KeyboardInterrupt  # the run dies with state-2 on disk (it holds the adapter, not a merged model)

    monkeypatch.setattr(resume.TrainingCheckpoints, "on_save", crash_after_first_save)
    with pytest.raises(KeyboardInterrupt):
        run_sft(recipe, tiny_model_dir, out)
    state = out / "checkpoints" / "state-2"
    assert {"adapter_model.safetensors", "optimizer.pt"} <= {p.name for p in state.iterdir()}
    monkeypatch.setattr(resume.TrainingCheckpoints, "on_save", original)
    assert run_sft(recipe, tiny_model_dir, out)["steps"] == 4
    for step in ("step-2", "step-4"):
        resumed = load_file(out / "checkpoints" / step / "model.safetensors")
        expected = load_file(reference / "checkpoints" / step / "model.safetensors")
        assert all(torch.equal(resumed[name], expected[name]) for name in expected), step


def random_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random A and B (peft starts B at 0, whose merge would change nothing), saved."""
    torch.manual_seed(seed)
    config = peft_config(LoraConfig(enabled=True, r=4, alpha=8.0, target_modules=["q_proj", "down_proj"]))
    config.init_lora_weights = False
    get_peft_model(load_model(base_dir), config).save_pretrained(out)
    return out


def test_averaging_merged_models_is_averaging_the_deltas_not_the_factors(qwen_model_dir, tmp_path):
    adapters = [random_adapter(qwen_model_dir, tmp_path / f"adapter-{i}", seed=i) for i in range(2)]
    merged = []
    for i, adapter in enumerate(adapters):
        folder = tmp_path / f"merged-{i}"
        folder.mkdir()
        merge_adapter(adapter, folder, qwen_model_dir)
        merged.append(folder)
    merge_models(merged, [0.5, 0.5], tmp_path / "average")
    average = load_file(tmp_path / "average" / "model.safetensors")
    base = load_file(qwen_model_dir / "model.safetensors")
    factors = [load_file(a / "adapter_model.safetensors") for a in adapters]
    scale = 8.0 / 4
    checked = 0
    for name, value in average.items():
        prefix = "base_model.model." + name.removesuffix(".weight")
        if f"{prefix}.lora_A.weight" not in factors[0]:
            assert torch.equal(value, base[name]), name  # untouched by either adapter
            continue
        a = [f[f"{prefix}.lora_A.weight"] for f in factors]
        b = [f[f"{prefix}.lora_B.weight"] for f in factors]
        mean_delta = sum(scale * b_i @ a_i for a_i, b_i in zip(a, b, strict=True)) / 2
        torch.testing.assert_close(value, base[name] + mean_delta, atol=1e-5, rtol=0)
        factor_average = base[name] + scale * (sum(b) / 2) @ (sum(a) / 2)  # averaging A and B separately
        assert (value - factor_average).abs().max() > 1e-2, name
        checked += 1
    assert checked == 2 * 2  # 2 layers x (q_proj, down_proj)


def test_a_merge_is_stored_in_the_training_dtype(tiny_model_dir, tmp_path):
    adapter = random_adapter(tiny_model_dir, tmp_path / "adapter", seed=0)
    shutil.copy(tiny_model_dir / "tokenizer.json", adapter / "tokenizer.json")
    merge_adapter_folder(adapter, tiny_model_dir, "bfloat16")
    assert {p.name for p in adapter.iterdir()} == {"config.json", "generation_config.json", "model.safetensors",
                                                   "tokenizer.json"}  # fmt: skip
    assert {t.dtype for t in load_file(adapter / "model.safetensors").values()} == {torch.bfloat16}
    assert AutoModelForCausalLM.from_pretrained(adapter).dtype == torch.bfloat16


def test_an_rl_step_with_lora_saves_a_merged_plain_model(tiny_model_dir, tmp_path):
    """What `ssp.signal.run.train_stage` does with `model.lora`: MGPOTrainer(peft_config=...), then the adapter it
    saved merged into the stage's starting model."""
    rl = RLSection(per_device_train_batch_size=8, num_generations=4, max_completion_length=8, max_steps=2,
                   learning_rate=1e-2, rewards={"even_length": 1.0, "short": 0.5}, mgpo_lambda=1.0)  # fmt: skip
    args = build_mgpo_config(rl, tmp_path / "stage", "test", 0)
    args.correctness_reward = "even_length"
    prompts = [{"prompt": [{"role": "user", "content": f"Compute {i}*(1+2)-3."}]} for i in range(8)]
    trainer = MGPOTrainer(
        model=load_model(tiny_model_dir),
        reward_funcs=[even_length, short],
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=load_tokenizer(tiny_model_dir),
        peft_config=peft_config(LORA),
    )
    assert isinstance(trainer.model, PeftModel)
    trainer.train()
    target = tmp_path / "model"
    trainer.save_model(str(target))
    assert "adapter_model.safetensors" in {p.name for p in target.iterdir()}
    merge_adapter_folder(target, tiny_model_dir)
    assert not ADAPTER_FILES & {p.name for p in target.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(target)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not any("lora" in name for name, _ in model.named_parameters())
    merged, base = load_file(target / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    changed = [name for name in base if not torch.equal(merged[name], base[name])]
    assert changed and all(name.endswith("_proj.weight") for name in changed)  # all-linear: only the projections
