"""The per-expert loop MoE: the test oracle for grouped dispatch (and the benchmark's baseline)."""

import torch
import torch.nn.functional as F


def loop_experts(experts, x_TD, topk_idx_TK, topk_w_TK):
    """Routed experts only: for each expert, run the tokens routed to it."""
    y_TD = torch.zeros_like(x_TD, dtype=torch.float32)
    for e in range(experts.gate_proj.shape[0]):
        token, slot = (topk_idx_TK == e).nonzero(as_tuple=True)
        if token.numel() == 0:
            continue
        h = F.silu(x_TD[token] @ experts.gate_proj[e].T) * (x_TD[token] @ experts.up_proj[e].T)
        y_TD = y_TD.index_add(0, token, (h @ experts.down_proj[e].T).float() * topk_w_TK[token, slot, None])
    return y_TD.to(x_TD.dtype)


def loop_oracle(moe, x_TD):
    """The whole MoE block (router, routed experts, shared experts) with the loop."""
    routing = moe.gate(x_TD)
    y_TD = loop_experts(moe.experts, x_TD, routing.expert_idx_TK, routing.weights_TK)
    if moe.shared_experts is not None:
        y_TD = y_TD + moe.shared_experts(x_TD).hidden
    return y_TD
