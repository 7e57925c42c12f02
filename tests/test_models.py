from transformers import AutoModelForCausalLM, AutoTokenizer

from ssp.config import TinyModelSpec
from ssp.models import count_parameters, load_model, load_tokenizer
from ssp.runs import tiny_model_texts
from ssp.tiny_models import build_tiny_model


def test_default_tiny_model_has_about_a_million_parameters(tmp_path, small_splits):
    path = build_tiny_model(
        tmp_path / "m", tiny_model_texts(small_splits["train"], "{problem}", None), TinyModelSpec(), seed=0
    )
    model = load_model(path)
    assert 1_000_000 <= count_parameters(model) <= 5_000_000
    assert model.config.model_type == "llama"


def test_tiny_model_is_an_ordinary_hf_folder(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|end|>")
    assert tokenizer.pad_token == "<|pad|>"
    assert (tiny_model_dir / "chat_template.jinja").is_file() or tokenizer.chat_template


def test_tokenizer_round_trips_and_spells_digits(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    text = "Compute 128*(4+5)-2. x=-25/(-5)=5. \\boxed{1234}"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    for digit in "0123456789":
        assert len(tokenizer(digit, add_special_tokens=False)["input_ids"]) == 1
    assert len(tokenizer("1234", add_special_tokens=False)["input_ids"]) == 4
    # characters the task never uses still survive (printable ASCII is in the training text)
    assert tokenizer.decode(tokenizer("Q~`|", add_special_tokens=False)["input_ids"]) == "Q~`|"


def test_chat_template_renders_turns_and_generation_prompt(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    prompt = [{"role": "user", "content": "Compute 1+1."}]
    rendered = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|user|>Compute 1+1.<|end|><|assistant|>"
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": "\\boxed{2}"}], tokenize=False)
    assert full == "<|user|>Compute 1+1.<|end|><|assistant|>\\boxed{2}<|end|>"


def test_same_seed_same_weights(tmp_path, small_splits):
    texts = tiny_model_texts(small_splits["train"][:20], "{problem}", None)
    spec = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=32)
    a = load_model(build_tiny_model(tmp_path / "a", texts, spec, seed=1))
    b = load_model(build_tiny_model(tmp_path / "b", texts, spec, seed=1))
    c = load_model(build_tiny_model(tmp_path / "c", texts, spec, seed=2))
    pairs = list(zip(a.parameters(), b.parameters(), c.parameters(), strict=True))
    assert all((pa == pb).all() for pa, pb, _ in pairs)
    assert any((pa != pc).any() for pa, _, pc in pairs)
