"""Expert parallelism: each MoE layer's routed experts split over the processes of an EP group.

Process r of an EP group of size P holds experts [r * E/P, (r + 1) * E/P) of every MoE layer; the
router, attention and shared experts stay whole (data parallel, sharded by FSDP2 outside this module).
A forward pass dispatches token copies with two all-to-alls: first the per-expert counts (so every
process knows how many rows it receives from whom), then the rows themselves. Received rows arrive
grouped by source process, then by expert; they are permuted to expert-major order for the grouped
GEMM and back, and the outputs return along the reverse all-to-all. Autograd runs the same exchange
backwards, so an expert's gradient sums the contributions of every process's tokens; `grad_scale`
turns that sum into the data-parallel mean the other parameters get.

Checkpoints stay whole: `gather_experts` rebuilds full [E, ...] tensors of a state dict (model or
optimiser) before saving, `slice_experts` cuts a full one down to this process's share on loading.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

from lingcoder.errors import LingcoderError
from lingcoder.model.moe import MoE, aligned_grouped_swiglu, combine, group_alignment


class ExpertParallel:
    """This process's share of one layer's experts and the group that holds the rest."""

    def __init__(self, group: dist.ProcessGroup, num_experts: int):
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if num_experts % self.size:
            raise LingcoderError(f"expert_parallel={self.size} must divide the model's num_experts={num_experts}")
        self.num_local = num_experts // self.size
        self.first = self.rank * self.num_local

    def __call__(self, experts, x_TD: torch.Tensor, topk_idx_TK: torch.Tensor, topk_w_TK: torch.Tensor):
        """The routed experts' weighted sum per token [T, D], computed wherever each expert lives."""
        P, L = self.size, self.num_local
        K = topk_idx_TK.shape[1]
        flat_N = topk_idx_TK.reshape(-1)
        order_N = flat_N.argsort(stable=True)  # destination-process-major, then expert
        token_N = order_N // K
        send_counts_E = torch.bincount(flat_N, minlength=P * L)
        recv_counts_PL = torch.empty_like(send_counts_E)
        dist.all_to_all_single(recv_counts_PL, send_counts_E, group=self.group)
        recv_counts_PL = recv_counts_PL.view(P, L)  # rows from process p for my expert l
        send_splits = send_counts_E.view(P, L).sum(1).tolist()
        recv_splits = recv_counts_PL.sum(1).tolist()

        x_RD = exchange(x_TD[token_N], recv_splits, send_splits, self.group)
        local_expert_R = torch.repeat_interleave(torch.arange(L, device=x_TD.device).repeat(P),
                                                 recv_counts_PL.reshape(-1), output_size=x_RD.shape[0])
        perm_R = local_expert_R.argsort(stable=True)  # source-major -> expert-major
        # Each process's loss is a mean over its own tokens and the other parameters' gradients are averaged
        # over processes; an expert's gradient arrives summed over the group, so scale it by 1 / P.
        weights = (_ScaleGrad.apply(w, 1.0 / P) for w in (experts.gate_proj, experts.up_proj, experts.down_proj))
        align = experts.align if experts.align is not None else group_alignment(x_TD.device)
        out_RD = aligned_grouped_swiglu(x_RD[perm_R], recv_counts_PL.sum(0), *weights, align)
        out_RD = out_RD[perm_R.argsort()]  # back to source-major
        out_ND = exchange(out_RD, send_splits, recv_splits, self.group)
        return combine(out_ND, token_N, topk_w_TK.reshape(-1)[order_N], x_TD)


def exchange(x: torch.Tensor, out_splits: list[int], in_splits: list[int], group) -> torch.Tensor:
    """Differentiable all-to-all of rows: `in_splits[p]` rows go to process p, `out_splits[p]` come back."""
    out = funcol.all_to_all_single_autograd(x.contiguous(), out_splits, in_splits, group=group)
    return funcol.wait_tensor(out)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def shard_experts(model, group: dist.ProcessGroup) -> None:
    """Keep only this process's share of every MoE layer's experts (parameters sliced in place)."""
    for moe in moe_layers(model):
        experts = moe.experts
        ep = ExpertParallel(group, experts.num_experts)
        for name in ("gate_proj", "up_proj", "down_proj"):
            full = getattr(experts, name)
            local = full.detach()[ep.first : ep.first + ep.num_local].clone()
            setattr(experts, name, torch.nn.Parameter(local, requires_grad=full.requires_grad))
        experts.expert_parallel = ep


def moe_layers(model) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def expert_shards(model) -> dict[str, ExpertParallel]:
    """Expert-parameter name (as in the model's state dict) -> its shard, for every sharded parameter."""
    found = {}
    for module_name, module in model.named_modules():
        ep = getattr(module, "expert_parallel", None)
        if ep is not None:
            for name in ("gate_proj", "up_proj", "down_proj"):
                found[f"{module_name}.{name}"] = ep
    return found


def gather_experts(state: dict, model, device: torch.device, optimizer=None) -> dict:
    """`state` (a model state dict, or with `optimizer` its state dict's `state`; keys = parameter names)
    with every expert tensor whole, gathered from the EP group. A collective every process calls in the
    same order; the values come from the model and optimiser themselves, so a process whose `state` is
    empty (e.g. not the one a CPU-offloaded full state dict is kept on) still takes its part."""
    shards = expert_shards(model)
    params = dict(model.named_parameters())
    out = dict(state)
    for key, ep in shards.items():
        param = params[key]
        if optimizer is None:
            full = _gather(_whole(param.detach()), ep, device)
            if key in out:
                out[key] = full.to(out[key].device)
            continue
        per_param = optimizer.state.get(param, {})
        for name in sorted(per_param):
            value = per_param[name]
            if isinstance(value, torch.Tensor) and value.ndim == 3:
                full = _gather(_whole(value), ep, device)
                if key in out:
                    out[key] = {**out[key], name: full.to(out[key][name].device)}
    return out


def _whole(t: torch.Tensor) -> torch.Tensor:
    """This process's expert slice whole over the FSDP dimension (a collective when FSDP-sharded)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def slice_experts(state: dict, model) -> dict:
    """This process's share of the full expert tensors of a state dict (model or optimiser `state`)."""
    shards = expert_shards(model)
    out = {}
    for key, value in state.items():
        ep = shards.get(key)
        if ep is None:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = {k: _slice(v, ep) if _is_full_expert_tensor(v, ep) else v for k, v in value.items()}
        else:
            out[key] = _slice(value, ep)
    return out


def _is_full_expert_tensor(v, ep: ExpertParallel) -> bool:
    return isinstance(v, torch.Tensor) and v.ndim == 3 and v.shape[0] == ep.num_local * ep.size


def _gather(local: torch.Tensor, ep: ExpertParallel, device: torch.device) -> torch.Tensor:
    on_device = local.to(device).contiguous()
    parts = [torch.empty_like(on_device) for _ in range(ep.size)]
    dist.all_gather(parts, on_device, group=ep.group)
    return torch.cat(parts).to(local.device)


def _slice(full: torch.Tensor, ep: ExpertParallel) -> torch.Tensor:
    if full.shape[0] != ep.num_local * ep.size:
        raise LingcoderError(f"expert tensor of shape {list(full.shape)}: expected {ep.num_local * ep.size} experts")
    return full[ep.first : ep.first + ep.num_local].clone()
