"""Attention: fused `query_key_value` projection, GQA, RoPE, causal SDPA, KV cache, document mask.

A single query (a decode step) without gradients takes `single_query_attention`, two batched matmuls:
on CPU SDPA's flash kernel is several times slower for one query than the two GEMMs it amounts to.

Shapes: B batch, T query tokens, S key tokens (cache included), H query heads, G key/value
heads, Dh head dim, D model dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lingcoder.model.config import BailingMoeConfig


def rope_cos_sin(position_ids_BT: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos/sin tables [B, T, Dh] for NeoX-style (rotate_half) RoPE over the full head dim."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids_BT.device).float() / head_dim))
    freqs_BTF = position_ids_BT.float()[..., None] * inv_freq
    angles_BTDh = torch.cat((freqs_BTF, freqs_BTF), dim=-1)
    return angles_BTDh.cos().to(dtype), angles_BTDh.sin().to(dtype)


def apply_rope(x_BHTDh: torch.Tensor, cos_BTDh: torch.Tensor, sin_BTDh: torch.Tensor) -> torch.Tensor:
    half = x_BHTDh.shape[-1] // 2
    rotated = torch.cat((-x_BHTDh[..., half:], x_BHTDh[..., :half]), dim=-1)
    return x_BHTDh * cos_BTDh[:, None] + rotated * sin_BTDh[:, None]


class KVCache:
    """Preallocated keys and values of every layer, [B, G, max_len, Dh] each, filled left to right."""

    def __init__(self, config: BailingMoeConfig, batch_size: int, max_len: int, device, dtype):
        shape = (batch_size, config.num_key_value_heads, max_len, config.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.length = 0  # tokens already stored; advanced by the model after all layers ran
        self.max_len = max_len

    def store(self, layer: int, k_BGTDh: torch.Tensor, v_BGTDh: torch.Tensor):
        """Write this step's keys/values after the cached ones; return all of them so far."""
        end = self.length + k_BGTDh.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} tokens > max_len {self.max_len}")
        self.keys[layer][:, :, self.length : end] = k_BGTDh
        self.values[layer][:, :, self.length : end] = v_BGTDh
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


def build_attention_mask(
    q_len: int,
    past_len: int,
    key_padding_mask_BS: torch.Tensor | None = None,
    document_ids_BT: torch.Tensor | None = None,
    device=None,
) -> torch.Tensor | None:
    """Boolean mask [B|1, 1, T, S] (True = may attend), or None when SDPA needs none.

    Causal over absolute positions; padded keys hidden; with `document_ids` (packed sequences,
    no cache) a query sees only keys of its own document. Every query always sees itself, so
    rows of padding tokens stay finite.
    """
    if key_padding_mask_BS is None and document_ids_BT is None and (past_len == 0 or q_len == 1):
        return None  # plain causal (is_causal) or one new token that sees everything
    s_len = past_len + q_len
    q_pos = torch.arange(past_len, s_len, device=device)[:, None]
    k_pos = torch.arange(s_len, device=device)[None, :]
    mask = (k_pos <= q_pos)[None, None]  # [1, 1, T, S]
    if key_padding_mask_BS is not None:
        mask = mask & key_padding_mask_BS[:, None, None, :s_len].bool()
    if document_ids_BT is not None:
        if past_len:
            raise ValueError("document_ids cannot be combined with a KV cache")
        same_doc = document_ids_BT[:, :, None] == document_ids_BT[:, None, :]
        mask = mask & same_doc[:, None]
    return mask | (k_pos == q_pos)[None, None]


class Attention(nn.Module):
    def __init__(self, config: BailingMoeConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.num_attention_heads, config.num_key_value_heads, config.head_dim
        )
        qkv_out = (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
        self.query_key_value = nn.Linear(config.hidden_size, qkv_out, bias=config.use_qkv_bias)
        self.dense = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=config.use_bias)

    def forward(self, x_BTD, cos_BTDh, sin_BTDh, mask, cache: KVCache | None = None):
        B, T, _ = x_BTD.shape
        qkv = self.query_key_value(x_BTD).view(B, T, self.n_heads + 2 * self.n_kv_heads, self.head_dim)
        q_BTHDh, k_BTGDh, v_BTGDh = qkv.split([self.n_heads, self.n_kv_heads, self.n_kv_heads], dim=2)
        q = apply_rope(q_BTHDh.transpose(1, 2), cos_BTDh, sin_BTDh)
        k = apply_rope(k_BTGDh.transpose(1, 2), cos_BTDh, sin_BTDh)
        v = v_BTGDh.transpose(1, 2)
        past_len = 0
        if cache is not None:
            past_len = cache.length
            k, v = cache.store(self.layer, k, v)
        if T == 1 and not torch.is_grad_enabled():
            out_BHTDh = single_query_attention(q, k, v, mask)
        else:
            causal = mask is None and past_len == 0 and T > 1
            out_BHTDh = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=self.n_kv_heads != self.n_heads
            )
        return self.dense(out_BHTDh.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


def single_query_attention(q_BH1Dh: torch.Tensor, k_BGSDh: torch.Tensor, v_BGSDh: torch.Tensor,
                           mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA of one query per row as two matmuls (softmax in fp32); `mask` [B|1, 1, 1, S] (True = may attend).

    GQA without repeating keys: the H/G query heads that share a key/value head are that head's rows.
    """
    B, H, _, Dh = q_BH1Dh.shape
    G, S = k_BGSDh.shape[1], k_BGSDh.shape[2]
    q_BGRDh = q_BH1Dh.reshape(B, G, H // G, Dh)
    scores_BGRS = torch.matmul(q_BGRDh, k_BGSDh.transpose(-1, -2)).float() * Dh**-0.5
    if mask is not None:
        scores_BGRS = scores_BGRS.masked_fill(~mask.reshape(mask.shape[0], 1, 1, S), float("-inf"))
    probs_BGRS = scores_BGRS.softmax(dim=-1).to(v_BGSDh.dtype)
    return torch.matmul(probs_BGRS, v_BGSDh).reshape(B, H, 1, Dh)
