"""The feed-forward blocks: the dense SwiGLU `MLP` and the `MoE` (fp32 softmax or sigmoid router, top-k,
grouped experts, shared experts, balancing losses). Both return a `FeedForwardOutput`.

Shapes: T tokens, D model dim, E routed experts, K experts per token, F expert width.
Dispatch is dropless: token copies are sorted by expert, per-expert offsets computed, and all
experts run in three `torch._grouped_mm` calls (gate, up, down) over the stacked weights. Each
expert's group of rows starts at a multiple of the kernel's alignment (8 rows on CUDA: 16-byte bf16
rows). For the static decode step (`model/static_decode.py`) the chosen experts' weights are gathered
instead (`gathered=True`): only those are read, with static shapes that `torch.compile` and CUDA graphs
capture whole. Eager decoding keeps the grouped path, which skips empty groups and was 2-3x faster on
this project's CPU than gathering (the gather copies the weights before the matmuls read them).
Under expert parallelism (`model/expert_parallel.py`) a layer holds a slice of the experts and
token copies travel to their expert's process and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lingcoder.model.config import BailingMoeConfig


@dataclass
class RouterStats:
    """What one MoE layer reports besides its output: losses (with grad) and load (without)."""

    load_balancing_loss: torch.Tensor  # E * sum_e f_e * P_e; 1 when perfectly balanced
    z_loss: torch.Tensor  # mean logsumexp(logits)^2
    tokens_per_expert: torch.Tensor  # [E], detached
    entropy: torch.Tensor  # mean routing entropy (nats), detached


@dataclass
class FeedForwardOutput:
    """What a decoder layer's feed-forward returns: its output, and router statistics from a MoE layer."""

    hidden: torch.Tensor  # same shape as the input
    router_stats: RouterStats | None = None  # None for a dense MLP


@dataclass
class Routing:
    """The router's decision for T tokens over E experts, K per token."""

    logits_TE: torch.Tensor  # fp32
    probs_TE: torch.Tensor  # routing probabilities over experts (softmax, or normalised sigmoid scores)
    expert_idx_TK: torch.Tensor  # chosen experts (by probability, plus the expert bias when balancing)
    weights_TK: torch.Tensor  # their mixing weights (renormalised when norm_topk_prob, times routed_scaling_factor)


class MLP(nn.Module):
    """SwiGLU MLP `down(silu(gate(x)) * up(x))`: dense layers and the shared experts."""

    def __init__(self, hidden: int, width: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, width, bias=False)
        self.up_proj = nn.Linear(hidden, width, bias=False)
        self.down_proj = nn.Linear(width, hidden, bias=False)

    def forward(self, x) -> FeedForwardOutput:
        return FeedForwardOutput(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class Router(nn.Module):
    """`mlp.gate` in the checkpoint: logits in fp32, softmax or sigmoid scores, top-k, renormalisation.

    With aux-loss-free balancing a per-expert bias (`expert_bias`, DeepSeek-V3, sigmoid scores) shifts
    which experts are *chosen* but not the weights they get; `update_bias` nudges it against the
    measured load. With expert groups (`n_group` > 1) only the `topk_group` best groups are eligible;
    a group scores by its best expert, or by its best two when there is a bias (as vLLM routes).
    """

    def __init__(self, config: BailingMoeConfig):
        super().__init__()
        self.top_k, self.norm_topk_prob = config.num_experts_per_tok, config.norm_topk_prob
        self.score_function, self.routed_scaling_factor = config.score_function, config.routed_scaling_factor
        self.n_group, self.topk_group = config.n_group or 1, config.topk_group or 1
        self.weight = nn.Parameter(torch.empty(config.num_experts, config.hidden_size))
        self.bias_update_rate = config.moe_router_bias_update_rate
        if config.moe_router_enable_expert_bias:
            self.register_buffer("expert_bias", torch.zeros(config.num_experts, dtype=torch.float32))
        else:
            self.expert_bias = None

    def forward(self, x_TD: torch.Tensor) -> Routing:
        with torch.autocast(x_TD.device.type, enabled=False):  # fp32 logits under bf16 autocast too
            logits_TE = F.linear(x_TD.float(), self.weight.float())
        if self.score_function == "sigmoid":
            scores_TE = logits_TE.sigmoid()
            probs_TE = scores_TE / scores_TE.sum(dim=-1, keepdim=True)  # normalised, as DeepSeek-V3's balance loss
        else:
            scores_TE = probs_TE = logits_TE.softmax(dim=-1)
        choice_TE = scores_TE if self.expert_bias is None else scores_TE + self.expert_bias
        if self.n_group > 1:
            choice_TE = keep_best_groups(choice_TE, self.n_group, self.topk_group, by_best_two=self.expert_bias
                                         is not None)
        topk_idx_TK = choice_TE.topk(self.top_k, dim=-1).indices
        topk_w_TK = scores_TE.gather(-1, topk_idx_TK)
        if self.norm_topk_prob and self.top_k > 1:
            topk_w_TK = topk_w_TK / topk_w_TK.sum(dim=-1, keepdim=True)
        if self.routed_scaling_factor != 1.0:
            topk_w_TK = topk_w_TK * self.routed_scaling_factor
        return Routing(logits_TE, probs_TE, topk_idx_TK, topk_w_TK)

    @torch.no_grad()
    def update_bias(self, tokens_per_expert_E: torch.Tensor) -> None:
        if self.expert_bias is None:
            return
        load = tokens_per_expert_E.float()
        self.expert_bias += self.bias_update_rate * torch.sign(load.mean() - load)


def keep_best_groups(choice_TE: torch.Tensor, n_group: int, topk_group: int, by_best_two: bool) -> torch.Tensor:
    """`choice_TE` with every expert outside each token's `topk_group` best groups set to -inf."""
    T, E = choice_TE.shape
    grouped_TGe = choice_TE.view(T, n_group, E // n_group)
    if by_best_two:
        group_score_TG = grouped_TGe.topk(2, dim=-1).values.sum(dim=-1)
    else:
        group_score_TG = grouped_TGe.amax(dim=-1)
    best_TG = group_score_TG.topk(topk_group, dim=-1).indices
    keep_TG = torch.zeros_like(group_score_TG, dtype=torch.bool).scatter_(1, best_TG, True)
    return grouped_TGe.masked_fill(~keep_TG[..., None], float("-inf")).view(T, E)


class GroupedExperts(nn.Module):
    """E SwiGLU experts stored stacked: gate_proj/up_proj [E, F, D], down_proj [E, D, F] (HF per-expert
    layout, stacked on the first dim). Under expert parallelism E is this process's share and
    `expert_parallel` routes token copies to the other processes' experts."""

    def __init__(self, num_experts: int, hidden: int, width: int):
        super().__init__()
        self.num_experts = num_experts  # all experts of the layer, wherever they live
        self.gate_proj = nn.Parameter(torch.empty(num_experts, width, hidden))
        self.up_proj = nn.Parameter(torch.empty(num_experts, width, hidden))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden, width))
        self.expert_parallel = None  # an `ExpertParallel` when the experts are sharded over processes
        self.align: int | None = None  # rows per group multiple; None: what the device's kernel wants

    def forward(self, x_TD: torch.Tensor, topk_idx_TK: torch.Tensor, topk_w_TK: torch.Tensor,
                gathered: bool = False):
        """Weighted sum over each token's K experts, [T, D]; also the per-expert token counts [E].
        `gathered`: gather the chosen experts' weights (few tokens, static shapes) instead of grouping."""
        counts_E = expert_counts(topk_idx_TK, self.num_experts)
        if self.expert_parallel is not None:
            y_TD = self.expert_parallel(self, x_TD, topk_idx_TK, topk_w_TK)
        elif gathered:
            y_TD = gathered_swiglu(x_TD, topk_idx_TK, topk_w_TK, self.gate_proj, self.up_proj, self.down_proj)
        else:
            y_TD = self.sorted_swiglu(x_TD, topk_idx_TK, topk_w_TK, counts_E)
        return y_TD, counts_E

    def sorted_swiglu(self, x_TD, topk_idx_TK, topk_w_TK, counts_E):
        """Token copies sorted by expert, three grouped GEMMs, weighted sum back per token."""
        K = topk_idx_TK.shape[1]
        order_N = topk_idx_TK.reshape(-1).argsort(stable=True)
        token_N = order_N // K
        out_ND = self.run_groups(x_TD[token_N], counts_E)
        return combine(out_ND, token_N, topk_w_TK.reshape(-1)[order_N], x_TD)

    def run_groups(self, x_ND: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        """SwiGLU of rows already sorted by (local) expert, `counts_E[e]` rows each, in the same order."""
        align = self.align if self.align is not None else group_alignment(x_ND.device)
        return aligned_grouped_swiglu(x_ND, counts_E, self.gate_proj, self.up_proj, self.down_proj, align)


def expert_counts(topk_idx_TK: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Token copies per expert [E] (a static-shape scatter, unlike `bincount`)."""
    flat = topk_idx_TK.reshape(-1)
    return flat.new_zeros(num_experts).scatter_add_(0, flat, torch.ones_like(flat))


def combine(out_ND, token_N, weight_N, x_TD):
    """sum_k w_k * expert_k(x) per token, accumulated in fp32, in the input's dtype."""
    weighted_ND = out_ND.float() * weight_N[:, None]
    y_TD = torch.zeros(x_TD.shape, device=x_TD.device, dtype=torch.float32)
    return y_TD.index_add_(0, token_N, weighted_ND).to(x_TD.dtype)


def group_alignment(device: torch.device) -> int:
    """Rows each expert group is padded to: 8 on CUDA (16-byte aligned bf16 groups for the grouped GEMM)."""
    return 8 if device.type == "cuda" else 1


def aligned_grouped_swiglu(x_ND, counts_E, w_gate, w_up, w_down, align: int):
    """`grouped_swiglu` with each group starting at a multiple of `align` rows (zero rows in between).

    The padded buffer has the static size N + E * (align - 1): no host sync."""
    if align <= 1:
        return grouped_swiglu(x_ND, w_gate, w_up, w_down, counts_E.cumsum(0).to(torch.int32))
    N, E = x_ND.shape[0], counts_E.shape[0]
    padded_E = (counts_E + align - 1) // align * align
    extra_E = padded_E - counts_E
    shift_E = extra_E.cumsum(0) - extra_E  # padding rows before each group
    expert_N = torch.repeat_interleave(torch.arange(E, device=x_ND.device), counts_E, output_size=N)
    dest_N = torch.arange(N, device=x_ND.device) + shift_E[expert_N]
    x_PD = x_ND.new_zeros(N + E * (align - 1), x_ND.shape[1]).index_copy(0, dest_N, x_ND)
    out_PD = grouped_swiglu(x_PD, w_gate, w_up, w_down, padded_E.cumsum(0).to(torch.int32))
    return out_PD[dest_N]


@torch.compiler.disable  # the meta kernel torch.compile traces with accepts bf16 only
def grouped_swiglu(x_ND, w_gate_EFD, w_up_EFD, w_down_EDF, offsets_E):
    """All experts' SwiGLU over expert-sorted token copies: three grouped GEMMs."""
    dtype = compute_dtype(x_ND)
    w_gate, w_up, w_down = (w.to(dtype) for w in (w_gate_EFD, w_up_EFD, w_down_EDF))
    x_ND = x_ND.to(dtype)
    h_NF = F.silu(torch._grouped_mm(x_ND, w_gate.mT, offs=offsets_E))
    h_NF = h_NF * torch._grouped_mm(x_ND, w_up.mT, offs=offsets_E)
    return torch._grouped_mm(h_NF, w_down.mT, offs=offsets_E)


def gathered_swiglu(x_TD, topk_idx_TK, topk_w_TK, w_gate_EFD, w_up_EFD, w_down_EDF):
    """Few tokens: gather each token's K experts' weights (only those are read) and run them batched.
    Static shapes throughout, so a compiled decode step captures it whole."""
    device = x_TD.device.type  # plain matmuls: any dtype, autocast's when it is on
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x_TD.dtype
    x_TD = x_TD.to(dtype)
    gate_TKFD, up_TKFD, down_TKDF = (w[topk_idx_TK].to(dtype) for w in (w_gate_EFD, w_up_EFD, w_down_EDF))
    h_TKF = F.silu(torch.einsum("tkfd,td->tkf", gate_TKFD, x_TD)) * torch.einsum("tkfd,td->tkf", up_TKFD, x_TD)
    out_TKD = torch.einsum("tkdf,tkf->tkd", down_TKDF, h_TKF)
    return (out_TKD.float() * topk_w_TK[..., None]).sum(1).to(x_TD.dtype)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Autocast does not cover `_grouped_mm`, so apply its dtype by hand; on CUDA the grouped GEMM
    is bf16-only, so fp32/fp16 models run their experts in bf16 there."""
    device = x.device.type
    if device == "cuda":
        return torch.bfloat16
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class MoE(nn.Module):
    """Routed experts plus always-on shared experts: `y = sum_k w_k E_k(x) + shared(x)`."""

    def __init__(self, config: BailingMoeConfig):
        super().__init__()
        self.num_experts = config.num_experts
        self.gate = Router(config)
        self.experts = GroupedExperts(config.num_experts, config.hidden_size, config.moe_intermediate_size)
        self.shared_experts = (
            MLP(config.hidden_size, config.shared_intermediate_size) if config.num_shared_experts else None
        )

    def forward(self, x_BTD: torch.Tensor) -> FeedForwardOutput:
        x_TD = x_BTD.reshape(-1, x_BTD.shape[-1])
        routing = self.gate(x_TD)
        y_TD, counts_E = self.experts(x_TD, routing.expert_idx_TK, routing.weights_TK)
        if self.shared_experts is not None:
            y_TD = y_TD + self.shared_experts(x_TD).hidden
        return FeedForwardOutput(y_TD.view_as(x_BTD), router_stats(routing.logits_TE, routing.probs_TE, counts_E))


def router_stats(logits_TE: torch.Tensor, probs_TE: torch.Tensor, counts_E: torch.Tensor) -> RouterStats:
    """Switch/GShard load-balancing loss and ST-MoE router z-loss, plus load metrics."""
    E = probs_TE.shape[-1]
    fraction_E = counts_E.float() / counts_E.sum().clamp(min=1)  # share of token copies per expert
    mean_prob_E = probs_TE.mean(dim=0)
    with torch.no_grad():
        entropy = -(probs_TE * probs_TE.clamp(min=1e-20).log()).sum(-1).mean()
    return RouterStats(
        load_balancing_loss=E * (fraction_E * mean_prob_E).sum(),
        z_loss=torch.logsumexp(logits_TE, dim=-1).square().mean(),
        tokens_per_expert=counts_E.detach(),
        entropy=entropy,
    )
