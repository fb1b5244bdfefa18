"""The BailingMoe decoder: pre-norm blocks, final norm, NormHead; `BailingMoeForCausalLM` is the
HF-style entry point (`from_pretrained`, `save_pretrained`, `model(input_ids, ...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lingcoder.model.attention import Attention, KVCache, build_attention_mask, rope_cos_sin
from lingcoder.model.config import BailingMoeConfig
from lingcoder.model.moe import MLP, GroupedExperts, MoE, Router, RouterStats

NORM_HEAD_EPS = 1e-7


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32, as the reference does, then cast back to the input dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x32).to(x.dtype)


class DecoderLayer(nn.Module):
    def __init__(self, config: BailingMoeConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attention = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.is_moe_layer(layer):
            self.mlp = MoE(config)
        else:
            self.mlp = MLP(config.hidden_size, config.intermediate_size)  # never biased, as in the reference

    def forward(self, x_BTD, cos, sin, mask, cache):
        h_BTD = x_BTD + self.attention(self.input_layernorm(x_BTD), cos, sin, mask, cache)
        out = self.mlp(self.post_attention_layernorm(h_BTD))
        return h_BTD + out.hidden, out.router_stats


class BailingMoeModel(nn.Module):
    def __init__(self, config: BailingMoeConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.activation_checkpointing = False  # recompute each block in backward instead of keeping activations

    def forward(self, input_ids_BT, attention_mask_BS=None, position_ids_BT=None, document_ids_BT=None,
                cache: KVCache | None = None):
        B, T = input_ids_BT.shape
        past_len = cache.length if cache is not None else 0
        if position_ids_BT is None:
            position_ids_BT = default_position_ids(B, T, past_len, attention_mask_BS, input_ids_BT.device)
        x_BTD = self.word_embeddings(input_ids_BT)
        cos, sin = rope_cos_sin(position_ids_BT, self.config.head_dim, self.config.rope_theta, x_BTD.dtype)
        mask = build_attention_mask(T, past_len, attention_mask_BS, document_ids_BT, input_ids_BT.device)
        router_stats: list[RouterStats] = []
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                x_BTD, stats = checkpoint(layer, x_BTD, cos, sin, mask, cache, use_reentrant=False)
            else:
                x_BTD, stats = layer(x_BTD, cos, sin, mask, cache)
            if stats is not None:
                router_stats.append(stats)
        if cache is not None:
            cache.length += T
        return self.norm(x_BTD), router_stats


def default_position_ids(B, T, past_len, attention_mask_BS, device):
    """0, 1, 2, ... after the cached tokens; with a padding mask, counted over real tokens only."""
    if attention_mask_BS is None:
        return torch.arange(past_len, past_len + T, device=device).expand(B, T)
    positions_BS = attention_mask_BS.long().cumsum(-1) - 1
    return positions_BS[:, past_len : past_len + T].clamp(min=0)


class NormHead(nn.Linear):
    """`lm_head`: each hidden column of the weight divided by its L2 norm over the vocabulary.

    The stored weight stays un-normalised; in training the denominator is detached, as in the
    reference. In inference the normalised weight is cached until the weight changes.
    """

    def __init__(self, hidden: int, vocab: int, normalize: bool):
        super().__init__(hidden, vocab, bias=False)
        self.normalize = normalize
        self._cached: tuple[tuple, torch.Tensor] | None = None

    def normalized_weight(self) -> torch.Tensor:
        w = self.weight
        if not self.normalize:
            return w
        if self.training or torch.is_grad_enabled():
            return w / (w.norm(p=2, dim=0, keepdim=True) + NORM_HEAD_EPS).detach()
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, w / (w.float().norm(p=2, dim=0, keepdim=True) + NORM_HEAD_EPS).to(w.dtype))
        return self._cached[1]

    def forward(self, h):
        return F.linear(h, self.normalized_weight())


@dataclass
class CausalLMOutput:
    logits: torch.Tensor  # [B, T, V]
    loss: torch.Tensor | None = None  # cross-entropy (+ aux_loss) when labels are given
    lm_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None  # weighted load-balancing + z-loss, summed over MoE layers
    load_balancing_loss: torch.Tensor | None = None  # mean over MoE layers, unweighted
    z_loss: torch.Tensor | None = None  # mean over MoE layers, unweighted
    tokens_per_expert: torch.Tensor | None = None  # [num MoE layers, E], detached
    router_entropy: torch.Tensor | None = None  # [num MoE layers], detached
    cache: KVCache | None = None


class BailingMoeForCausalLM(nn.Module):
    def __init__(self, config: BailingMoeConfig):
        super().__init__()
        self.config = config
        self.model = BailingMoeModel(config)
        self.lm_head = NormHead(config.hidden_size, config.vocab_size, config.norm_head)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.word_embeddings.weight
        if not any(p.is_meta for p in self.parameters()):
            self.init_weights()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Normal(0, initializer_range) for linear, embedding, router and expert weights; zeros for linear
        biases; ones for norms. Parameters are drawn in `named_parameters()` order, so a seed gives
        the same weights whatever the module types' order in this function."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        seen: set[int] = set()
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen:  # a tied weight, initialised where it first appeared
                    continue
                seen.add(id(p))
                if isinstance(module, RMSNorm):
                    p.fill_(1.0)
                elif isinstance(module, nn.Linear) and name == "bias":
                    p.zero_()
                elif isinstance(module, (nn.Linear, nn.Embedding, Router, GroupedExperts)):
                    p.copy_(torch.randn(p.shape, generator=gen) * self.config.initializer_range)
                else:
                    raise TypeError(f"init_weights: no rule for {type(module).__name__}.{name}")

    def forward(self, input_ids, attention_mask=None, position_ids=None, document_ids=None, labels=None,
                cache: KVCache | None = None, logits_to_keep: int = 0) -> CausalLMOutput:
        """Logits (and losses when `labels` is given). As in HF, `labels` are aligned with `input_ids`
        (-100 = ignore): position t is scored on predicting labels[t + 1]."""
        hidden_BTD, stats = self.model(input_ids, attention_mask, position_ids, document_ids, cache)
        if logits_to_keep:
            hidden_BTD = hidden_BTD[:, -logits_to_keep:]
        logits = self.lm_head(hidden_BTD)
        out = CausalLMOutput(logits=logits, cache=cache)
        if stats:
            out.load_balancing_loss = torch.stack([s.load_balancing_loss for s in stats]).mean()
            out.z_loss = torch.stack([s.z_loss for s in stats]).mean()
            out.aux_loss = len(stats) * (
                self.config.router_aux_loss_coef * out.load_balancing_loss
                + self.config.router_z_loss_coef * out.z_loss
            )
            out.tokens_per_expert = torch.stack([s.tokens_per_expert for s in stats])
            out.router_entropy = torch.stack([s.entropy for s in stats])
        if labels is not None:
            out.lm_loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            out.loss = out.lm_loss if out.aux_loss is None else out.lm_loss + out.aux_loss
        return out

    @torch.no_grad()
    def update_router_biases(self, tokens_per_expert_LE: torch.Tensor) -> None:
        """Aux-loss-free balancing: after an optimiser step, move each MoE layer's expert bias."""
        moe_layers = [layer.mlp for layer in self.model.layers if isinstance(layer.mlp, MoE)]
        for moe, counts_E in zip(moe_layers, tokens_per_expert_LE, strict=True):
            moe.gate.update_bias(counts_E)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- HF-style persistence (implemented in checkpoint.py) ------------------------------
    def save_pretrained(self, directory: str | Path, max_shard_size: int | str = "5GB") -> None:
        from lingcoder.model.checkpoint import save_checkpoint

        save_checkpoint(self, directory, max_shard_size=max_shard_size)

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype | str | None = None,
                        device: str | torch.device = "cpu", config: BailingMoeConfig | None = None):
        from lingcoder.model.checkpoint import load_checkpoint

        return load_checkpoint(directory, dtype=dtype, device=device, config=config)
