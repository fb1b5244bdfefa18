"""Serving-time CPU weights: bf16 linears and routed experts packed once for oneDNN instead of every call.

On CPU a bf16 `F.linear` (and each GEMM inside `torch._grouped_mm`) reorders its weight into oneDNN's
blocked layout on every call; for the few rows of a decode step that reorder costs more than the GEMM.
`pack_for_serving(model)` swaps, in place, every bf16 SwiGLU `MLP` for a `PackedMLP`, every other
`nn.Linear` (the head included, with NormHead's normalised weight) for a `PackedLinear` and every
`GroupedExperts` for `PackedExperts`, whose weights are reordered once at load time; a SwiGLU's gate and
up projections become one GEMM. The GEMMs are oneDNN's either way, so the logits are the same; the model
then serves inference only (no gradients, no `state_dict` round trip). Elsewhere (fp32, CUDA, a torch
without oneDNN bf16) it is left as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lingcoder.model.moe import MLP, FeedForwardOutput, GroupedExperts
from lingcoder.model.transformer import NormHead


def packing_applies(model: nn.Module) -> bool:
    """Whether `pack_for_serving` changes `model`: bf16 weights on a CPU whose oneDNN runs bf16."""
    parameter = next(model.parameters())
    return (parameter.device.type == "cpu" and parameter.dtype == torch.bfloat16
            and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@torch.no_grad()
def pack_for_serving(model: nn.Module) -> nn.Module:
    """Pack `model`'s bf16 CPU linears and experts in place (see the module docstring); returns `model`."""
    if packing_applies(model):
        _pack_children(model)
    return model


def _pack_children(parent: nn.Module) -> None:
    for name, child in parent.named_children():
        if isinstance(child, MLP):
            setattr(parent, name, PackedMLP(child))
        elif isinstance(child, NormHead):
            setattr(parent, name, PackedLinear(child.normalized_weight(), None))
        elif isinstance(child, nn.Linear):
            setattr(parent, name, PackedLinear(child.weight, child.bias))
        elif isinstance(child, GroupedExperts) and child.expert_parallel is None:
            setattr(parent, name, PackedExperts(child))
        else:
            _pack_children(child)


def _pack(weight_OI: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight_OI.detach().contiguous(), 1)


def _linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class PackedLinear(nn.Module):
    """`F.linear(x, weight, bias)` with the weight reordered once."""

    def __init__(self, weight_OI: torch.Tensor, bias_O: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight_OI.shape
        self.packed = _pack(weight_OI)
        self.bias = None if bias_O is None else bias_O.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return _linear(x, self.packed, self.bias)
        return _linear(x.reshape(-1, self.in_features), self.packed, self.bias).view(*x.shape[:-1], -1)


def _swiglu(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """`down(silu(gate(x)) * up(x))` with gate and up stacked in one packed weight (one GEMM, not two)."""
    gate, up = _linear(x, gate_up, None).chunk(2, dim=-1)
    return _linear(F.silu(gate) * up, down, None)


class PackedMLP(nn.Module):
    """A SwiGLU `MLP` (dense layers, shared experts) with gate and up in one packed weight."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.gate_up = _pack(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
        self.down = _pack(mlp.down_proj.weight)

    def forward(self, x: torch.Tensor) -> FeedForwardOutput:
        return FeedForwardOutput(_swiglu(x.reshape(-1, x.shape[-1]), self.gate_up, self.down).view_as(x))


class PackedExperts(nn.Module):
    """`GroupedExperts` for serving: each expert that received token copies runs its three packed GEMMs.

    Few tokens reach few experts in a decode step, so a loop over the experts hit (one host sync for the
    counts) reads only their weights; results are combined per token in fp32 as `GroupedExperts` does.
    """

    def __init__(self, experts: GroupedExperts):
        super().__init__()
        self.num_experts = experts.gate_proj.shape[0]
        self.gate_up = [_pack(torch.cat([gate, up])) for gate, up in zip(experts.gate_proj, experts.up_proj,
                                                                          strict=True)]
        self.down = [_pack(w) for w in experts.down_proj]

    def forward(self, x_TD: torch.Tensor, topk_idx_TK: torch.Tensor, topk_w_TK: torch.Tensor,
                gathered: bool = False):
        """Weighted sum over each token's K experts, [T, D]; also the per-expert token counts [E].
        (`gathered` is accepted for `GroupedExperts`' callers: this loop already reads only the chosen experts.)"""
        K = topk_idx_TK.shape[1]
        flat_expert_N = topk_idx_TK.reshape(-1)
        order_N = flat_expert_N.argsort(stable=True)
        token_N = order_N // K
        counts_E = torch.bincount(flat_expert_N, minlength=self.num_experts)
        x_ND = x_TD[token_N]
        outputs, start = [], 0
        for expert, count in enumerate(counts_E.tolist()):
            if count:
                outputs.append(_swiglu(x_ND[start : start + count], self.gate_up[expert], self.down[expert]))
                start += count
        weighted_ND = torch.cat(outputs).float() * topk_w_TK.reshape(-1)[order_N, None]
        y_TD = torch.zeros(x_TD.shape, device=x_TD.device, dtype=torch.float32)
        return y_TD.index_add_(0, token_N, weighted_ND).to(x_TD.dtype), counts_E
