"""A decode step with static shapes, for `torch.compile(fullgraph=True)` and CUDA graphs through it.

The eager forward with a `KVCache` changes shape every token (keys grow, the cache length is a Python
int), so a compiled version recompiles and cannot be captured as a graph. `StaticDecodeStep` runs one
new token per sequence against the whole preallocated cache instead: the write position is a tensor,
attention covers all `max_len` slots under a mask, and the MoE always takes its gathered-experts path
(only the chosen experts are read; at any batch size, so the graph stays whole). Its inputs and outputs
keep the same shapes and addresses every step, which is what CUDA graphs need; the cache tensors are the
module's buffers, updated in place.

    cache = KVCache(config, batch, max_len, device, dtype)
    logits = model(prompt, cache=cache).logits                       # prefill, eager
    step = torch.compile(StaticDecodeStep(model, cache), fullgraph=True, mode="reduce-overhead")
    logits = step(next_ids, positions, slot, key_valid)              # one token per sequence
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lingcoder.model.attention import KVCache, apply_rope, rope_cos_sin
from lingcoder.model.moe import MoE
from lingcoder.model.transformer import BailingMoeForCausalLM


class StaticDecodeStep(nn.Module):
    """`forward(input_ids [B, 1], position_ids [B, 1], slot [] long, key_valid [B, max_len] bool)` -> the
    next-token logits [B, V]; writes the step's keys and values at `slot` of every layer's cache.

    `key_valid` marks the cache slots a sequence may attend to besides those up to `slot` (False for left
    padding); the NormHead weight is normalised once, so rebuild the step after changing the weights."""

    def __init__(self, model: BailingMoeForCausalLM, cache: KVCache):
        super().__init__()
        self.model, self.config = model, model.config
        for i, (k, v) in enumerate(zip(cache.keys, cache.values, strict=True)):
            self.register_buffer(f"keys_{i}", k, persistent=False)  # the same tensors: prefill fills them
            self.register_buffer(f"values_{i}", v, persistent=False)
        with torch.no_grad():
            head = model.lm_head.normalized_weight() if hasattr(model.lm_head, "normalized_weight") else None
        self.register_buffer("head_weight", (head if head is not None else model.lm_head.weight).detach().clone(),
                             persistent=False)
        self.max_len = cache.max_len

    @torch.no_grad()
    def forward(self, input_ids_B1, position_ids_B1, slot, key_valid_BS):
        c = self.config
        x_B1D = self.model.model.word_embeddings(input_ids_B1)
        cos, sin = rope_cos_sin(position_ids_B1, c.head_dim, c.rope_theta, x_B1D.dtype)
        positions_S = torch.arange(self.max_len, device=input_ids_B1.device)
        mask_B11S = (key_valid_BS & (positions_S <= slot))[:, None, None, :]
        for i, layer in enumerate(self.model.model.layers):
            keys, values = getattr(self, f"keys_{i}"), getattr(self, f"values_{i}")
            h_B1D = x_B1D + self._attention(layer.attention, layer.input_layernorm(x_B1D), cos, sin, mask_B11S,
                                            keys, values, slot)
            x_B1D = h_B1D + feed_forward(layer.mlp, layer.post_attention_layernorm(h_B1D))
        hidden_BD = self.model.model.norm(x_B1D)[:, -1]
        return F.linear(hidden_BD, self.head_weight)

    def _attention(self, attn, x_B1D, cos, sin, mask_B11S, keys_BGSDh, values_BGSDh, slot):
        B = x_B1D.shape[0]
        qkv = attn.query_key_value(x_B1D).view(B, 1, attn.n_heads + 2 * attn.n_kv_heads, attn.head_dim)
        q, k, v = qkv.split([attn.n_heads, attn.n_kv_heads, attn.n_kv_heads], dim=2)
        q = apply_rope(q.transpose(1, 2), cos, sin)
        k = apply_rope(k.transpose(1, 2), cos, sin)
        keys_BGSDh.index_copy_(2, slot.view(1), k.to(keys_BGSDh.dtype))
        values_BGSDh.index_copy_(2, slot.view(1), v.transpose(1, 2).to(values_BGSDh.dtype))
        out_BH1Dh = F.scaled_dot_product_attention(q, keys_BGSDh, values_BGSDh, attn_mask=mask_B11S,
                                                   enable_gqa=attn.n_kv_heads != attn.n_heads)
        return attn.dense(out_BH1Dh.transpose(1, 2).reshape(B, 1, attn.n_heads * attn.head_dim))


def feed_forward(mlp, x_B1D: torch.Tensor) -> torch.Tensor:
    """The layer's feed-forward; a MoE always on its gathered-experts path (static shapes at any batch)."""
    if not isinstance(mlp, MoE):
        return mlp(x_B1D).hidden
    x_TD = x_B1D.reshape(-1, x_B1D.shape[-1])
    routing = mlp.gate(x_TD)
    y_TD, _ = mlp.experts(x_TD, routing.expert_idx_TK, routing.weights_TK, gathered=True)
    if mlp.shared_experts is not None:
        y_TD = y_TD + mlp.shared_experts(x_TD).hidden
    return y_TD.view_as(x_B1D)


@torch.no_grad()
def greedy_decode(model: BailingMoeForCausalLM, prompt_ids_BT: torch.Tensor, max_new_tokens: int,
                  compile: bool = False, mode: str | None = None, backend: str = "inductor") -> torch.Tensor:
    """Greedy continuation [B, max_new_tokens] of equal-length prompts: eager prefill into a preallocated
    cache, then `StaticDecodeStep` per token (compiled once when `compile`; `mode="reduce-overhead"` uses
    CUDA graphs on a GPU)."""
    B, T = prompt_ids_BT.shape
    device, dtype = prompt_ids_BT.device, next(model.parameters()).dtype
    cache = KVCache(model.config, B, T + max_new_tokens, device, dtype)
    logits_BV = model(prompt_ids_BT, cache=cache).logits[:, -1]
    step = StaticDecodeStep(model, cache)
    if compile:
        step = torch.compile(step, fullgraph=True, mode=mode, backend=backend)
    key_valid_BS = torch.ones(B, cache.max_len, dtype=torch.bool, device=device)
    out = torch.empty(B, max_new_tokens, dtype=torch.long, device=device)
    for i in range(max_new_tokens):
        out[:, i] = logits_BV.argmax(-1)
        if i + 1 == max_new_tokens:
            break
        slot = torch.tensor(T + i, device=device)
        logits_BV = step(out[:, i : i + 1], slot.expand(B, 1), slot, key_valid_BS)
    return out
