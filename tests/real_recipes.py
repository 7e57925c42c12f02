"""recipes/sft.yaml and recipes/rl.yaml, unchanged, on the Qwen-shaped fixture: small local data files written
here, and the overrides (only overrides) that point the recipes at them and shrink them to CPU size."""

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ssp.data.synthetic import make_splits

REPO = Path(__file__).resolve().parents[1]
SFT_RECIPE = REPO / "recipes" / "sft.yaml"
RL_RECIPE = REPO / "recipes" / "rl.yaml"

# Small code problems in the format `ssp data multipath` / `ssp data rl` write: assert tests, a reference path.
CODE_PROBLEMS = [
    ("Write a function add(a, b) that returns a + b.", "def add(a, b):\n    return a + b", "assert add(2, 3) == 5"),
    ("Write a function double(x) that returns 2 * x.", "def double(x):\n    return 2 * x", "assert double(4) == 8"),
    ("Write a function neg(x) that returns -x.", "def neg(x):\n    return -x", "assert neg(3) == -3"),
    ("Write a function sq(x) that returns x * x.", "def sq(x):\n    return x * x", "assert sq(5) == 25"),
]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def write_data(folder: Path) -> dict[str, str]:
    """Math (the synthetic task's four subdomains) and code files for training, probing, RL and testing."""
    splits = make_splits(seed=0, train_size=32, probe_size=2, test_size=2)
    math = {name: [{"problem": r["problem"], "solutions": r["solutions"], "answer": r["answer"],
                    "domain": r["domain"]} for r in rows] for name, rows in splits.items()}  # fmt: skip
    code = [
        {"problem": p, "solutions": [f"```python\n{s}\n```"], "tests": t, "prelude": "", "domain": "code"}
        for p, s, t in CODE_PROBLEMS
    ]
    return {
        "sft_math": write_jsonl(folder / "sft" / "math.jsonl", math["train"]),
        "sft_code": write_jsonl(folder / "sft" / "code.jsonl", code),
        "probe_math": write_jsonl(folder / "probe" / "math.jsonl", math["probe"]),
        "probe_code": write_jsonl(folder / "probe" / "code.jsonl", code[:2]),
        "test_math": write_jsonl(folder / "test" / "math.jsonl", math["test"][:4]),
        "test_code": write_jsonl(folder / "test" / "code.jsonl", code[2:]),
        "rl_math": write_jsonl(folder / "rl" / "math.jsonl", math["train"]),
        "rl_code": write_jsonl(folder / "rl" / "code.jsonl", code),
    }


CPU = ["model.dtype=float32"]


def sft_overrides(model: str, data: dict[str, str], out: Path) -> list[str]:
    return [
        f"output_dir={out}",
        f"model.name_or_path={model}",
        *CPU,
        f"data.train.0.path={data['sft_math']}",
        f"data.train.1.path={data['sft_code']}",
        f"data.probe.0.path={data['probe_math']}",
        f"data.probe.1.path={data['probe_code']}",
        f"data.test.0.path={data['test_math']}",
        "data.test.0.domain=math",
        "data.test.0.reward=math_verify",
        "sft.max_steps=4",
        "sft.save_every=2",
        "sft.gradient_accumulation_steps=1",
        "sft.max_length=512",
        "sft.bf16=false",
        "sft.report_to=[]",
        "sft.trl.dataset_num_proc=1",
        "probe.sampling={n: 2, temperature: 1.0, top_p: 0.95, top_k: 0, max_new_tokens: 16, batch_size: 4}",
        "probe.ks=[1,2]",
        "fusion.k=2",
        "eval.sampling={n: 2, temperature: 1.0, top_p: 0.95, top_k: 0, max_new_tokens: 16, batch_size: 4}",
        "eval.ks=[1,2]",
    ]


def rl_overrides(model: str, data: dict[str, str], out: Path) -> list[str]:
    stage = ["max_steps=1", "max_completion_length=16", "per_device_train_batch_size=4",
             "gradient_accumulation_steps=1", "trl={steps_per_generation: 1}"]  # fmt: skip
    return [
        f"output_dir={out}",
        f"model.name_or_path={model}",
        *CPU,
        f"data.test.0.path={data['test_math']}",
        "data.test.0.domain=math",
        "data.test.0.reward=math_verify",
        f"data.test.1.path={data['test_code']}",
        "data.test.1.fields.tests=tests",
        "data.test.1.fields.prelude=prelude",
        "data.test.1.reward=code_tests",
        "data.test.1.prompt_template={problem} Write Python.",
        f"rl.data.0.path={data['rl_math']}",
        f"rl.stages.2.data.0.path={data['rl_code']}",
        "rl.num_generations=2",
        "rl.bf16=false",
        "rl.report_to=[]",
        "rl.save_every=null",
        *[f"rl.stages.{i}.{setting}" for i in range(3) for setting in stage],
        "eval.sampling={n: 2, temperature: 1.0, top_p: 0.95, top_k: 0, max_new_tokens: 16, batch_size: 4}",
        "eval.ks=[1,2]",
    ]


QUESTION = [{"role": "user", "content": "What is 2+2?"}]
ANSWER, AFTER_THE_TURN = "\\boxed{4}", " maybe -7"


def rig_model(model_dir: Path, out: Path) -> Path:
    """A copy of the Qwen-shaped model that, asked anything, writes `ANSWER`, `<|im_end|>`, then `AFTER_THE_TURN`
    over and over: the shape of a real model that does not stop at the end of its turn unless told to.

    The layers' outputs are zeroed, so each position's hidden state is its own token's embedding; the (untied) LM
    head maps each token of the chain to the next one. Its generation config stops at `<|endoftext|>` only, as the
    base model's does."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    after = encode(AFTER_THE_TURN)
    chain = [encode(prompt)[-1], *encode(ANSWER), tokenizer.convert_tokens_to_ids("<|im_end|>"), *after, after[0]]
    successor: dict[int, int] = {}
    for token, following in zip(chain, chain[1:], strict=False):
        assert successor.setdefault(token, following) == following, "the chain must not repeat a token"
    config = model.config
    config.tie_word_embeddings = False
    rigged = AutoModelForCausalLM.from_config(config)
    rigged.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        for layer in rigged.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        rigged.model.norm.weight.fill_(1.0)
        embedding = rigged.model.embed_tokens.weight
        head = torch.zeros_like(rigged.lm_head.weight)
        for token, following in successor.items():
            head[following] += 10.0 * embedding[token] / embedding[token].norm()
        rigged.lm_head.weight.copy_(head)
    rigged.generation_config = model.generation_config
    rigged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
