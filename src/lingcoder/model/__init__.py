"""The BailingMoe architecture (Ling-Coder-lite), HF-compatible on disk."""

from lingcoder.model.attention import KVCache
from lingcoder.model.config import PRESETS, BailingMoeConfig, count_parameters
from lingcoder.model.transformer import BailingMoeForCausalLM, CausalLMOutput

__all__ = ["PRESETS", "BailingMoeConfig", "BailingMoeForCausalLM", "CausalLMOutput", "KVCache", "count_parameters"]
