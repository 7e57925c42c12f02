import pytest

from ssp.config import SamplingConfig
from ssp.evaluation.evaluate import evaluate_model, score_rows, summarize
from ssp.generation.sampling import Generations, sample
from ssp.models import load_model, load_tokenizer


def rows(*specs):
    return [
        {"problem": f"p{i}", "answer": answer, "domain": domain, "reward": "boxed_match"}
        for i, (answer, domain) in enumerate(specs)
    ]


def test_score_rows_uses_each_rows_gold_answer():
    data = rows(("3", "a"), ("-4", "b"))
    completions = [["so \\boxed{3}", "\\boxed{4}", "no box"], ["\\boxed{-4}", "\\boxed{ -4 }", "\\boxed{4}"]]
    assert score_rows(data, completions) == [[True, False, False], [True, True, False]]


def test_summarize_gives_unbiased_pass_at_k_per_domain_and_overall():
    data = rows(("1", "a"), ("1", "a"), ("1", "b"))
    correct = [[True, False, False, False], [False, False, False, False], [True, True, True, True]]
    generations = Generations(lengths=[[10, 20, 30, 40]] * 3, truncated=[[False, False, False, True]] * 3)
    summary = summarize(data, correct, [1, 2], generations)
    assert summary["a"]["pass@1"] == pytest.approx((0.25 + 0.0) / 2)
    assert summary["a"]["pass@2"] == pytest.approx((0.5 + 0.0) / 2)  # 1 - C(3,2)/C(4,2) = 0.5
    assert summary["b"]["pass@1"] == 1.0
    assert summary["all"]["pass@1"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert summary["all"]["problems"] == 3 and summary["all"]["samples"] == 4
    assert summary["a"]["mean_length"] == 25.0
    assert summary["a"]["truncated"] == 0.25


def test_sampling_is_batched_with_n_sequences_per_prompt(tiny_model_dir, monkeypatch):
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    calls = []
    original = model.generate

    def counting_generate(**kwargs):
        calls.append((kwargs["input_ids"].shape[0], kwargs["num_return_sequences"]))
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", counting_generate)
    prompts = [[{"role": "user", "content": f"Compute {i}+1."}] for i in range(5)]
    sampling = SamplingConfig(n=3, max_new_tokens=6, batch_size=2)
    generations = sample(model, tokenizer, prompts, sampling, progress=False)
    assert calls == [(2, 3), (2, 3), (1, 3)]  # ceil(5 / 2) calls, never one call per sample
    assert [len(t) for t in generations.texts] == [3] * 5
    assert all(1 <= length <= 6 for group in generations.lengths for length in group)
    # a sample is truncated exactly when it used the whole budget without emitting EOS
    for group_texts, group_truncated in zip(generations.lengths, generations.truncated, strict=True):
        assert all(length == 6 for length, cut in zip(group_texts, group_truncated, strict=True) if cut)


def test_generation_never_runs_past_the_context(tiny_model_dir):
    tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
    model.config.max_position_embeddings = 20
    prompt = [[{"role": "user", "content": "Compute 1+1."}]]  # 13 tokens with the template
    generations = sample(model, tokenizer, prompt, SamplingConfig(n=1, max_new_tokens=64), greedy=True, progress=False)
    prompt_len = len(tokenizer.apply_chat_template(prompt[0], add_generation_prompt=True, tokenize=True)["input_ids"])
    assert generations.lengths[0][0] <= 20 - prompt_len
    model.config.max_position_embeddings = prompt_len
    with pytest.raises(ValueError, match="leave no room"):
        sample(model, tokenizer, prompt, SamplingConfig(n=1), greedy=True, progress=False)


def test_seeded_evaluation_is_reproducible(tiny_model_dir, small_splits):
    data = [
        dict(r, reward="boxed_match", prompt=r["problem"], id=f"t-{i}")
        for i, r in enumerate(small_splits["test"][::4])
    ]
    sampling = SamplingConfig(n=4, max_new_tokens=8, batch_size=4)
    first = evaluate_model(tiny_model_dir, data, sampling, [1, 4], seed=5, name="test")
    second = evaluate_model(tiny_model_dir, data, sampling, [1, 4], seed=5, name="test")
    assert first == second
    assert set(first["domains"]) == {"arithmetic", "linear", "modular", "sequence", "all"}
    assert first["tokens_generated"] > 0
    assert sorted(first["per_problem"]) == sorted(row["id"] for row in data)
    assert all(0 <= count <= 4 for count in first["per_problem"].values())
    other_seed = evaluate_model(tiny_model_dir, data, sampling, [1, 4], seed=6, name="test")
    assert other_seed != first  # the seed drives the samples
