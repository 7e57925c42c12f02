import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from ssp.cli import main
from ssp.spectrum.fusion import MergeError, merge_models


def make_model_dir(path, tensors, config=None):
    path.mkdir(parents=True)
    save_file(tensors, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps(config or {"model_type": "llama", "hidden_size": 2}))
    (path / "tokenizer.json").write_text("{}")
    return path


def test_two_models_give_their_weighted_mean(tmp_path):
    a = make_model_dir(tmp_path / "a", {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0, 4.0]])})
    b = make_model_dir(tmp_path / "b", {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([[8.0, 0.0]])})
    merge_models([a, b], [0.25, 0.75], tmp_path / "m")
    merged = load_file(tmp_path / "m" / "model.safetensors")
    assert torch.allclose(merged["w"], torch.tensor([2.5, 5.0]))
    assert torch.allclose(merged["b"], torch.tensor([[6.0, 1.0]]))
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()


def test_weights_are_normalised_and_default_uniform(tmp_path):
    a = make_model_dir(tmp_path / "a", {"w": torch.tensor([0.0])})
    b = make_model_dir(tmp_path / "b", {"w": torch.tensor([4.0])})
    merge_models([a, b], [1, 3], tmp_path / "m1")
    merge_models([a, b], None, tmp_path / "m2")
    assert load_file(tmp_path / "m1" / "model.safetensors")["w"].item() == pytest.approx(3.0)
    assert load_file(tmp_path / "m2" / "model.safetensors")["w"].item() == pytest.approx(2.0)


def test_identical_inputs_give_identical_weights(tmp_path, tiny_model_dir):
    merge_models([tiny_model_dir, tiny_model_dir, tiny_model_dir], None, tmp_path / "m")
    original = load_file(tiny_model_dir / "model.safetensors")
    merged = load_file(tmp_path / "m" / "model.safetensors")
    assert original.keys() == merged.keys()
    assert all(torch.equal(original[k], merged[k]) for k in original)


def test_identical_contents_in_different_folders_stay_exact_up_to_rounding(tmp_path, tiny_model_dir):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    merge_models([tiny_model_dir, copy], [0.5, 0.5], tmp_path / "m")
    original = load_file(tiny_model_dir / "model.safetensors")
    merged = load_file(tmp_path / "m" / "model.safetensors")
    assert all(torch.allclose(original[k], merged[k], atol=1e-7) for k in original)


def test_merged_tiny_model_loads_and_is_the_average(tmp_path, tiny_model_dir):
    other = tmp_path / "other"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.save_pretrained(other)
    merge_models([tiny_model_dir, other], [0.5, 0.5], tmp_path / "m")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for (name, p_merged), (_, p_base) in zip(merged.named_parameters(), base.named_parameters(), strict=True):
        assert torch.allclose(p_merged, p_base + 0.5, atol=1e-6), name


def test_bf16_is_accumulated_in_float32_and_kept_bf16(tmp_path):
    a = make_model_dir(tmp_path / "a", {"w": torch.full((4,), 1.0, dtype=torch.bfloat16)})
    b = make_model_dir(tmp_path / "b", {"w": torch.full((4,), 1.0078125, dtype=torch.bfloat16)})
    merge_models([a, b], None, tmp_path / "m")
    merged = load_file(tmp_path / "m" / "model.safetensors")["w"]
    assert merged.dtype == torch.bfloat16


def test_sharded_checkpoints_keep_their_shards(tmp_path):
    index = {
        "metadata": {},
        "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"},
    }
    dirs = []
    for name, scale in (("a", 1.0), ("b", 3.0)):
        path = tmp_path / name
        path.mkdir()
        save_file({"x": torch.ones(2) * scale}, path / "model-00001-of-00002.safetensors")
        save_file({"y": torch.ones(3) * scale}, path / "model-00002-of-00002.safetensors")
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
        (path / "config.json").write_text("{}")
        dirs.append(path)
    merge_models(dirs, None, tmp_path / "m")
    assert torch.allclose(load_file(tmp_path / "m" / "model-00001-of-00002.safetensors")["x"], torch.full((2,), 2.0))
    assert torch.allclose(load_file(tmp_path / "m" / "model-00002-of-00002.safetensors")["y"], torch.full((3,), 2.0))


def test_mismatched_shapes_are_refused(tmp_path):
    a = make_model_dir(tmp_path / "a", {"w": torch.zeros(2, 3)})
    b = make_model_dir(tmp_path / "b", {"w": torch.zeros(3, 2)})
    with pytest.raises(MergeError, match=r"tensor w has shape \[3, 2\], expected \[2, 3\]"):
        merge_models([a, b], None, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_mismatched_tensor_names_and_configs_are_refused(tmp_path):
    a = make_model_dir(tmp_path / "a", {"w": torch.zeros(2)})
    b = make_model_dir(tmp_path / "b", {"v": torch.zeros(2)})
    c = make_model_dir(tmp_path / "c", {"w": torch.zeros(2)}, {"model_type": "llama", "hidden_size": 4})
    with pytest.raises(MergeError, match="is not in both"):
        merge_models([a, b], None, tmp_path / "m")
    with pytest.raises(MergeError, match="config hidden_size differs"):
        merge_models([a, c], None, tmp_path / "m")


def test_bad_weights_are_refused(tmp_path):
    a = make_model_dir(tmp_path / "a", {"w": torch.zeros(2)})
    with pytest.raises(MergeError, match="1 weights for 2 models"):
        merge_models([a, a], [1.0], tmp_path / "m")
    with pytest.raises(MergeError, match="non-negative"):
        merge_models([a, a], [1.0, -0.5], tmp_path / "m")


def test_cli_merge(tmp_path, capsys):
    a = make_model_dir(tmp_path / "a", {"w": torch.tensor([0.0])})
    b = make_model_dir(tmp_path / "b", {"w": torch.tensor([2.0])})
    assert main(["merge", str(a), str(b), "--weights", "3", "1", "--out", str(tmp_path / "m")]) == 0
    assert load_file(tmp_path / "m" / "model.safetensors")["w"].item() == pytest.approx(0.5)
    c = make_model_dir(tmp_path / "c", {"w": torch.zeros(3)})
    assert main(["merge", str(a), str(c), "--out", str(tmp_path / "m2")]) == 2
    assert "tensor w has shape [3]" in capsys.readouterr().err
