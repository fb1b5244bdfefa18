"""Shared fixtures: small random models that run in milliseconds on a CPU."""

import dataclasses

import pytest
import torch

from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM


def micro_config(**overrides) -> BailingMoeConfig:
    """Smaller than the `tiny` preset: every code path, a fraction of the cost."""
    base = BailingMoeConfig.preset(
        "tiny", vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, num_experts=8, num_experts_per_tok=2, num_shared_experts=1,
        moe_intermediate_size=16, intermediate_size=48, max_position_embeddings=256,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def micro_model() -> BailingMoeForCausalLM:
    torch.manual_seed(0)
    return BailingMoeForCausalLM(micro_config()).eval()
