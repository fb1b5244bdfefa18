"""Checkpoints in the HF layout: round trips, sharding, dtype, key names, and clear errors."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeForCausalLM
from lingcoder.model.checkpoint import INDEX_FILE

from .conftest import micro_config


def saved(model, path, **kwargs):
    model.save_pretrained(path, **kwargs)
    return path


def test_round_trip_gives_identical_logits_and_the_papers_key_names(micro_model, tmp_path):
    path = saved(micro_model, tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "bailing_moe"
    assert config["architectures"] == ["BailingMoeForCausalLM"]
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert list(f.get_tensor("model.layers.1.mlp.experts.7.down_proj.weight").shape) == [32, 16]
    assert {
        "model.word_embeddings.weight", "model.norm.weight", "lm_head.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
        "model.layers.0.attention.query_key_value.weight", "model.layers.0.attention.dense.weight",
        "model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.0.gate_proj.weight",
        "model.layers.0.mlp.experts.0.up_proj.weight", "model.layers.0.mlp.shared_experts.down_proj.weight",
    } <= keys
    assert not any(k.endswith("experts.gate_proj") for k in keys)  # stacked names never reach disk
    assert len([k for k in keys if ".experts." in k and "shared" not in k]) == 2 * 8 * 3

    loaded = BailingMoeForCausalLM.from_pretrained(path).eval()
    ids = torch.randint(0, 97, (2, 11))
    assert torch.equal(loaded(ids).logits, micro_model(ids).logits)


def test_sharded_save_writes_an_index_and_loads_back(micro_model, tmp_path):
    path = saved(micro_model, tmp_path / "sharded", max_shard_size="20KB")
    index = json.loads((path / INDEX_FILE).read_text())
    shards = sorted(p.name for p in path.glob("model-*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert set(index["weight_map"].values()) == set(shards)
    assert not (path / "model.safetensors").exists()
    loaded = BailingMoeForCausalLM.from_pretrained(path).eval()
    ids = torch.randint(0, 97, (1, 7))
    assert torch.equal(loaded(ids).logits, micro_model(ids).logits)


def test_load_in_a_chosen_dtype(micro_model, tmp_path):
    path = saved(micro_model, tmp_path / "ckpt")
    loaded = BailingMoeForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert loaded.model.layers[0].mlp.experts.gate_proj.shape == (8, 16, 32)
    with pytest.raises(LingcoderError, match="unknown dtype 'float13'"):
        BailingMoeForCausalLM.from_pretrained(path, dtype="float13")


def test_dense_and_aux_free_variants_round_trip(tmp_path):
    variants = {"dense": micro_config().dense(), "bias": micro_config(
        score_function="sigmoid", moe_router_enable_expert_bias=True, moe_router_bias_update_rate=0.1)}
    for name, config in variants.items():
        model = BailingMoeForCausalLM(config).eval()
        if name == "bias":
            model.model.layers[0].mlp.gate.expert_bias.fill_(0.25)
        loaded = BailingMoeForCausalLM.from_pretrained(saved(model, tmp_path / name)).eval()
        ids = torch.randint(0, 97, (1, 9))
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    keys = load_file(str(tmp_path / "dense" / "model.safetensors")).keys()
    assert "model.layers.0.mlp.gate_proj.weight" in keys  # HF's dense-layer names


def break_checkpoint(path, edit):
    tensors = load_file(str(path / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(path / "model.safetensors"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("model.norm.weight"), r"missing weight\(s\).*model.norm.weight"),
        (lambda t: t.pop("model.layers.1.mlp.experts.3.up_proj.weight"), r"missing.*experts \[3\]"),
        (lambda t: t.update({"model.layers.0.extra.weight": torch.zeros(2)}), "unexpected weight"),
        (lambda t: t.update({"model.norm.weight": torch.zeros(31)}), r"model.norm.weight has shape \[31\]"),
        (lambda t: t.update({"model.layers.0.mlp.experts.9.up_proj.weight": torch.zeros(16, 32)}),
         "expert 9 but the config has num_experts=8"),
    ],
)
def test_bad_weights_are_clear_errors(micro_model, tmp_path, edit, message):
    path = saved(micro_model, tmp_path / "ckpt")
    break_checkpoint(path, edit)
    with pytest.raises(LingcoderError, match=message):
        BailingMoeForCausalLM.from_pretrained(path)


def test_bad_directories_are_clear_errors(micro_model, tmp_path):
    with pytest.raises(LingcoderError, match="checkpoint directory not found"):
        BailingMoeForCausalLM.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LingcoderError, match="no config.json"):
        BailingMoeForCausalLM.from_pretrained(tmp_path / "empty")

    path = saved(micro_model, tmp_path / "corrupt")
    (path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(LingcoderError, match="unreadable safetensors file"):
        BailingMoeForCausalLM.from_pretrained(path)

    sharded = saved(micro_model, tmp_path / "sharded", max_shard_size="20KB")
    next(sharded.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(LingcoderError, match="named in the index are missing"):
        BailingMoeForCausalLM.from_pretrained(sharded)

    wrong_type = saved(micro_model, tmp_path / "llama")
    config = json.loads((wrong_type / "config.json").read_text())
    (wrong_type / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(LingcoderError, match="model_type is 'llama'"):
        BailingMoeForCausalLM.from_pretrained(wrong_type)


def test_config_that_does_not_match_the_checkpoint_is_a_clear_error(micro_model, tmp_path):
    path = saved(micro_model, tmp_path / "ckpt")
    with pytest.raises(LingcoderError, match="num_experts: given 4 vs 8"):
        BailingMoeForCausalLM.from_pretrained(path, config=micro_config(num_experts=4))
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    with pytest.raises(LingcoderError, match="config does not match weights"):
        BailingMoeForCausalLM.from_pretrained(path)


def test_loads_a_real_style_config_json_with_extra_hf_keys(micro_model, tmp_path):
    """Real Ling-Coder-lite config.json files carry keys we do not model (auto_map, ...)."""
    path = saved(micro_model, tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    for ours in ("router_aux_loss_coef", "router_z_loss_coef", "moe_router_bias_update_rate"):
        config.pop(ours)
    config.pop("head_dim")
    config.update({"auto_map": {"AutoConfig": "configuration_bailing_moe.BailingMoeConfig"},
                   "transformers_version": "4.36.0", "max_window_layers": 28})
    (path / "config.json").write_text(json.dumps(config))
    loaded = BailingMoeForCausalLM.from_pretrained(path)
    assert loaded.config.head_dim == 8 and loaded.config.extra["max_window_layers"] == 28
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["auto_map"] == config["auto_map"]


def test_checkpoints_carry_their_transformers_config_class(micro_model, tmp_path):
    """`auto_map` names configuration_bailing_moe.py, written beside config.json, whose fields cover ours."""
    import ast

    from lingcoder.model.config import BailingMoeConfig

    path = saved(micro_model, tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_bailing_moe.BailingMoeConfig"}
    tree = ast.parse((path / "configuration_bailing_moe.py").read_text())
    [init] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    accepted = {a.arg for a in init.args.args}
    ours_only = {"extra", "torch_dtype", "router_aux_loss_coef", "router_z_loss_coef", "moe_router_bias_update_rate"}
    assert {f for f in BailingMoeConfig.__dataclass_fields__} - ours_only <= accepted
    assert not any(isinstance(n, ast.ImportFrom) and n.module.startswith("lingcoder") for n in ast.walk(tree)
                   if isinstance(n, ast.ImportFrom))


def test_an_expert_bias_needs_sigmoid_scores_as_vllm_does(tmp_path):
    with pytest.raises(LingcoderError, match="expert bias .* needs score_function = 'sigmoid'; vLLM"):
        micro_config(moe_router_enable_expert_bias=True)
    with pytest.raises(LingcoderError, match="set moe_router_enable_expert_bias = true"):
        micro_config(score_function="sigmoid", moe_router_bias_update_rate=0.1)
    with pytest.raises(LingcoderError, match="score_function 'tanh'"):
        micro_config(score_function="tanh")
    with pytest.raises(LingcoderError, match="n_group=3"):
        micro_config(n_group=3, topk_group=1)
    sigmoid = micro_config(score_function="sigmoid", moe_router_enable_expert_bias=True)
    assert (sigmoid.n_group, sigmoid.topk_group) == (1, 1)  # the form vLLM's CPU router runs
