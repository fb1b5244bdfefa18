"""The whole model: parameter counts, KV cache, document mask, NormHead, dense twin."""

import pytest
import torch

from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM, KVCache, count_parameters
from lingcoder.model.attention import single_query_attention
from lingcoder.model.transformer import NORM_HEAD_EPS

from .conftest import micro_config


def test_ling_coder_lite_counts_are_the_papers():
    total, active = count_parameters(BailingMoeConfig.preset("ling-coder-lite"))
    assert round(total / 1e9, 2) == 16.80
    assert round(active / 1e9, 2) == 2.75


@pytest.mark.parametrize(("preset", "overrides"), [("tiny", {}), ("small", {}), ("tiny", {"use_bias": True,
                                                     "use_qkv_bias": True, "first_k_dense_replace": 2})])
def test_counts_equal_instantiated_parameters(preset, overrides):
    config = BailingMoeConfig.preset(preset, **overrides)
    with torch.device("meta"):
        model = BailingMoeForCausalLM(config)
    assert count_parameters(config)[0] == model.num_parameters()
    if preset == "small":
        assert 100e6 <= model.num_parameters() <= 300e6


def test_dense_twin_activates_as_many_parameters_in_the_same_code_path():
    moe = BailingMoeConfig.preset("tiny")
    dense = moe.dense()
    _, moe_active = count_parameters(moe)
    dense_total, dense_active = count_parameters(dense)
    assert dense_total == dense_active
    router = moe.num_experts * moe.hidden_size * moe.num_hidden_layers
    assert dense_active == moe_active - router
    model = BailingMoeForCausalLM(micro_config().dense())
    ids = torch.randint(0, 97, (2, 9))
    out = model(ids, labels=ids)
    assert out.aux_loss is None and out.tokens_per_expert is None and torch.isfinite(out.loss)


def test_unknown_preset_and_invalid_config_are_clear():
    with pytest.raises(LingcoderError, match="unknown model preset 'huge'"):
        BailingMoeConfig.preset("huge")
    with pytest.raises(LingcoderError, match="multiple of num_key_value_heads"):
        BailingMoeConfig.preset("tiny", num_key_value_heads=3)


def test_incremental_decoding_matches_full_forward(micro_model):
    ids = torch.randint(0, 97, (2, 12))
    full = micro_model(ids).logits
    cache = KVCache(micro_model.config, 2, 16, "cpu", torch.float32)
    step_logits = [micro_model(ids[:, :5], cache=cache).logits]  # prefill, then one token at a time
    for t in range(5, 12):
        step_logits.append(micro_model(ids[:, t : t + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(step_logits, dim=1), full, atol=1e-5, rtol=1e-5)


def test_chunked_prefill_with_cache_is_causal(micro_model):
    ids = torch.randint(0, 97, (1, 10))
    full = micro_model(ids).logits
    cache = KVCache(micro_model.config, 1, 10, "cpu", torch.float32)
    first = micro_model(ids[:, :4], cache=cache).logits
    rest = micro_model(ids[:, 4:], cache=cache).logits
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_decodes_like_each_prompt_alone(micro_model):
    short, long = [5, 6, 7], [8, 9, 10, 11, 12, 13]
    alone = micro_model(torch.tensor([short])).logits[0, -1]
    padded = torch.tensor([[0, 0, 0, *short], long])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1] * 6])
    batched = micro_model(padded, attention_mask=mask).logits[0, -1]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_document_mask_isolates_packed_documents(micro_model):
    doc_a, doc_b = torch.randint(0, 97, (1, 6)), torch.randint(0, 97, (1, 5))
    packed = torch.cat([doc_a, doc_b], dim=1)
    doc_ids = torch.tensor([[0] * 6 + [1] * 5])
    positions = torch.tensor([list(range(6)) + list(range(5))])
    out = micro_model(packed, document_ids=doc_ids, position_ids=positions).logits
    torch.testing.assert_close(out[:, :6], micro_model(doc_a).logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 6:], micro_model(doc_b).logits, atol=1e-5, rtol=1e-5)
    leaky = micro_model(packed).logits[:, 6:]  # without the mask, document b sees document a
    assert not torch.allclose(leaky, micro_model(doc_b).logits, atol=1e-4)


def test_norm_head_normalises_columns_and_detaches_the_denominator_in_training():
    model = BailingMoeForCausalLM(micro_config())
    head = model.lm_head
    with torch.no_grad():
        head.weight.mul_(torch.linspace(0.5, 3.0, head.weight.shape[1]))
    stored = head.weight.detach().clone()
    h = torch.randn(4, head.weight.shape[1])
    model.eval()
    with torch.no_grad():
        logits = head(h)
    expected_w = stored / (stored.norm(dim=0, keepdim=True) + NORM_HEAD_EPS)
    torch.testing.assert_close(logits, h @ expected_w.T)
    assert torch.equal(head.weight, stored)  # the parameter itself stays un-normalised

    model.train()
    head(h).sum().backward()
    detached_grad = h.sum(0)[None, :] / (stored.norm(dim=0, keepdim=True) + NORM_HEAD_EPS)
    torch.testing.assert_close(head.weight.grad, detached_grad.expand_as(stored))


def test_loss_adds_the_weighted_router_losses(micro_model):
    ids = torch.randint(0, 97, (2, 10))
    out = micro_model(ids, labels=ids)
    cfg = micro_model.config
    expected_aux = cfg.num_hidden_layers * (
        cfg.router_aux_loss_coef * out.load_balancing_loss + cfg.router_z_loss_coef * out.z_loss
    )
    torch.testing.assert_close(out.aux_loss, expected_aux)
    torch.testing.assert_close(out.loss, out.lm_loss + out.aux_loss)
    assert out.tokens_per_expert.shape == (cfg.num_hidden_layers, cfg.num_experts)
    assert out.tokens_per_expert.sum() == cfg.num_hidden_layers * 20 * cfg.num_experts_per_tok
    labels = ids.clone()
    labels[:, :5] = -100
    masked = micro_model(ids, labels=labels).lm_loss
    logits = out.logits[:, 4:-1].reshape(-1, cfg.vocab_size)
    torch.testing.assert_close(masked, torch.nn.functional.cross_entropy(logits, ids[:, 5:].reshape(-1)))


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_single_query_attention_equals_sdpa(dtype, tolerance):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 6, 1, 8, dtype=dtype), torch.randn(3, 2, 10, 8, dtype=dtype), torch.randn(3, 2, 10, 8,
                                                                                                       dtype=dtype)
    mask = torch.rand(3, 1, 1, 10) > 0.3
    mask[..., -1] = True
    for m in (mask, None):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)
        torch.testing.assert_close(single_query_attention(q, k, v, m), expected, atol=tolerance, rtol=tolerance)


def test_decoding_without_gradients_matches_full_forward(micro_model):
    ids = torch.randint(0, 97, (2, 12))
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, :3] = False  # row 0 is left-padded
    with torch.inference_mode():
        full = micro_model(ids[:, :12], attention_mask=mask[:, :12]).logits
        cache = KVCache(micro_model.config, 2, 16, "cpu", torch.float32)
        steps = [micro_model(ids[:, :5], attention_mask=mask, cache=cache).logits]
        for t in range(5, 12):
            steps.append(micro_model(ids[:, t : t + 1], attention_mask=mask, cache=cache).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1)[:, 3:], full[:, 3:], atol=1e-5, rtol=1e-5)


def test_init_weights_by_module_type_is_seeded_and_keeps_tied_weights_tied():
    config = micro_config(use_qkv_bias=True, tie_word_embeddings=True, first_k_dense_replace=1,
                          initializer_range=0.05)
    model = BailingMoeForCausalLM(config)
    model.init_weights(seed=3)
    for name, p in model.named_parameters():
        if "norm" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith(".bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        else:  # linear, embedding, router and stacked expert weights
            assert 0.02 < p.std().item() < 0.1, name
    assert model.lm_head.weight is model.model.word_embeddings.weight
    again = BailingMoeForCausalLM(config)
    again.init_weights(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
