"""The BailingMoe architecture (Ling-Coder-lite), HF-compatible on disk.

`BailingMoeConfig` and `count_parameters` import without torch (readers of run files, such as the
report, use them); the modules that need torch load on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lingcoder.model.config import PRESETS, BailingMoeConfig, count_parameters

if TYPE_CHECKING:
    from lingcoder.model.attention import KVCache
    from lingcoder.model.transformer import BailingMoeForCausalLM, CausalLMOutput

_NEEDS_TORCH = {"KVCache": "lingcoder.model.attention", "BailingMoeForCausalLM": "lingcoder.model.transformer",
                "CausalLMOutput": "lingcoder.model.transformer"}

__all__ = ["PRESETS", "BailingMoeConfig", "BailingMoeForCausalLM", "CausalLMOutput", "KVCache", "count_parameters"]


def __getattr__(name: str):
    if name in _NEEDS_TORCH:
        return getattr(importlib.import_module(_NEEDS_TORCH[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
