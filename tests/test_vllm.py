"""The vLLM code paths, on vLLM's CPU build (`make test-vllm`; CUDA builds run them the same way): probing
through vLLM, evaluation spread over two processes each with its own engine, and TRL's colocated vLLM rollouts,
which stop at the end of the turn. Skipped where vLLM is not installed (the default `make test`)."""

import importlib.util
import json
import subprocess

import pytest
from real_recipes import QUESTION, RL_RECIPE, SFT_RECIPE, rig_model, sft_overrides, write_data
from test_parallel import ENV, SCRIPTS, torchrun
from test_stop_tokens import CONTEXT

from ssp.cli import main
from ssp.models import prepare_initial_model

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make test-vllm)"),
]


def read(path):
    return json.loads(path.read_text())


def test_probing_samples_through_vllm(qwen_model_dir, tmp_path):
    data = write_data(tmp_path / "data")
    settings = ["sft.max_steps=2", "probe.backend=vllm", "eval.backend=transformers", "eval.base=false"]
    assert main(["sft", str(SFT_RECIPE), *sft_overrides(str(qwen_model_dir), data, tmp_path / "sft"), *settings]) == 0
    probe = read(tmp_path / "sft" / "probe.json")
    assert probe["backend"] == "vllm" and list(probe["checkpoints"]) == ["step-2"]
    assert probe["checkpoints"]["step-2"]["all"]["problems"] == 10
    assert read(tmp_path / "sft" / "eval.json")["models"]["spectrum"]["backend"] == "transformers"


def test_evaluation_spreads_over_two_processes_with_an_engine_each(qwen_model_dir, tmp_path):
    command = torchrun(str(SCRIPTS / "spread_evaluation.py"), str(qwen_model_dir), str(tmp_path), "vllm")
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [read(tmp_path / f"rank{r}.json") for r in (0, 1)]
    assert ranks[0] == ranks[1] and ranks[0]["processes"] == 2  # both processes hold the gathered whole
    assert ranks[0]["sampled"]["backend"] == "vllm" and ranks[0]["sampled"]["domains"]["all"]["problems"] == 20


def test_colocated_vllm_rollouts_stop_at_the_end_of_turn(qwen_model_dir, tmp_path):
    rigged = rig_model(qwen_model_dir, tmp_path / "rigged")
    prepared = tmp_path / "prepared"
    assert prepare_initial_model(rigged, prepared, context=CONTEXT, chat_template=None)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"problem": QUESTION[0]["content"], "answer": "4", "domain": "d"}) + "\n"
                            for _ in range(4)))  # fmt: skip
    out = tmp_path / "rl"
    overrides = [
        f"output_dir={out}", f"model.name_or_path={prepared}", "model.dtype=float32", "model.context={}",
        "data.test.0.path=" + str(data), "data.test.0.reward=math_verify", "data.test.1.path=" + str(data),
        "data.test.1.reward=math_verify", "data.prompt_template='{problem}'", f"rl.data.0.path={data}",
        "rl.stages=[{name: main, max_steps: 1, max_completion_length: 16}]", "rl.use_vllm=true",
        "rl.per_device_train_batch_size=4", "rl.gradient_accumulation_steps=1", "rl.num_generations=4",
        "rl.bf16=false", "rl.report_to=[]", "rl.save_every=null",
        "rl.trl={vllm_gpu_memory_utilization: 0.15, vllm_max_model_length: 256, steps_per_generation: 1}",
        "eval.base=false", "eval.backend=vllm",
        "eval.sampling={n: 2, temperature: 1.0, top_p: 1.0, top_k: 0, max_new_tokens: 16, batch_size: 4}",
        "eval.ks=[1,2]",
    ]  # fmt: skip
    assert main(["rl", str(RL_RECIPE), *overrides]) == 0
    log = read(out / "stages" / "main" / "metrics.json")["log_history"][0]
    assert any(key.startswith("sampling/") for key in log), "TRL's vLLM importance-sampling metrics"
    answer_tokens = 6  # \boxed{4} is 5 tokens, then <|im_end|>
    assert log["completions/mean_length"] == answer_tokens and log["completions/clipped_ratio"] == 0.0
    assert log["rewards/math_verify/mean"] == 1.0
    evaluation = read(out / "stages" / "main" / "eval.json")
    assert evaluation["backend"] == "vllm" and evaluation["pass@1"] == 1.0 and evaluation["truncated"] == 0.0
