import dataclasses
import os
from pathlib import Path

import pytest

import ssp.pretrain
from ssp.config import TinyModelSpec
from ssp.data.synthetic import make_splits
from ssp.runs import tiny_model_texts
from ssp.tiny_models import QwenShape, build_qwen_shaped_model, build_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


# The most pretraining steps a test runs: the demo recipe pretrains its base for minutes (once per machine, in the
# user's cache), and the tests, which check the code and not the base's quality, build theirs in a temporary one.
TEST_PRETRAIN_STEPS = 40


@pytest.fixture(scope="session", autouse=True)
def machine_cache(tmp_path_factory):
    """The pretrained tiny bases the tests build go to a temporary cache, never the user's ~/.cache/ssp, and are
    pretrained for at most TEST_PRETRAIN_STEPS steps (docs/benchmarks.md measures the demo's real base)."""
    os.environ["SSP_CACHE"] = str(tmp_path_factory.mktemp("ssp-cache"))
    full_length = ssp.pretrain.pretrain_tiny_model

    def shortened(out_dir, spec, seed):
        pretraining = dataclasses.replace(spec.pretrain, steps=min(spec.pretrain.steps, TEST_PRETRAIN_STEPS))
        return full_length(out_dir, dataclasses.replace(spec, pretrain=pretraining), seed)

    ssp.pretrain.pretrain_tiny_model = shortened
    yield
    ssp.pretrain.pretrain_tiny_model = full_length


@pytest.fixture(scope="session")
def small_splits():
    return make_splits(seed=0, train_size=200, probe_size=8, test_size=8)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, small_splits):
    """An untrained tiny model saved as a Hugging Face folder (built once per test session)."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    spec = TinyModelSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    return build_tiny_model(out, tiny_model_texts(small_splits["train"], "{problem}", None), spec, seed=0)


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def qwen_model_dir(tmp_path_factory, small_splits):
    """A random Qwen2 model shaped like Qwen2.5-Math-1.5B: 4,096 positions, RoPE theta 10,000, the Qwen2.5-Math chat
    template, EOS <|endoftext|> while turns end in <|im_end|>, and a tokenizer that loads as Qwen2Tokenizer."""
    out = tmp_path_factory.mktemp("qwen") / "model"
    texts = tiny_model_texts(small_splits["train"], "{problem}", None)
    texts += ["Let's think step by step and output the final answer within \\boxed{}.", "Write Python code def return"]
    return build_qwen_shaped_model(out, texts, QwenShape(), seed=0)
