"""The MoE block: grouped dispatch against a per-expert loop oracle, balancing losses, router bias."""

import math

import torch

from lingcoder.model.moe import MLP, FeedForwardOutput, MoE, Routing, router_stats

from .conftest import micro_config
from .moe_oracle import loop_oracle


def make_moe(seed=0, **overrides):
    torch.manual_seed(seed)
    moe = MoE(micro_config(**overrides))
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return moe


def test_grouped_dispatch_matches_loop_oracle_values_and_gradients():
    moe = make_moe()
    x = torch.randn(3, 7, 32, requires_grad=True)
    out = moe(x)
    y, stats = out.hidden, out.router_stats
    grad_out = torch.randn_like(y)
    (y * grad_out).sum().backward()
    grads = {n: p.grad.clone() for n, p in moe.named_parameters()}
    x_grad = x.grad.clone()

    moe.zero_grad()
    x.grad = None
    y_ref = loop_oracle(moe, x.reshape(-1, 32)).view_as(y)
    (y_ref * grad_out).sum().backward()
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x_grad, x.grad, atol=1e-5, rtol=1e-5)
    for name, p in moe.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-5, rtol=1e-5, msg=name)
    assert stats.tokens_per_expert.sum() == 21 * 2


def test_experts_that_get_no_tokens_have_zero_gradient_and_match_oracle():
    moe = make_moe()
    with torch.no_grad():  # steer every token to experts 0 and 1: experts 2..7 get nothing
        moe.gate.weight.zero_()
        moe.gate.weight[0, 0] = 50.0
        moe.gate.weight[1, 0] = 40.0
    x = torch.randn(10, 32)
    x[:, 0] = x[:, 0].abs() + 1
    x.requires_grad_(True)
    out = moe(x[None])
    y, stats = out.hidden, out.router_stats
    assert stats.tokens_per_expert.tolist() == [10, 10, 0, 0, 0, 0, 0, 0]
    y.sum().backward()
    assert moe.experts.gate_proj.grad[2:].abs().sum() == 0
    assert moe.experts.gate_proj.grad[:2].abs().sum() > 0
    torch.testing.assert_close(y[0], loop_oracle(moe, x), atol=1e-5, rtol=1e-5)


def test_bf16_dispatch_matches_oracle_in_bf16():
    moe = make_moe().to(torch.bfloat16)
    x = torch.randn(64, 32, dtype=torch.bfloat16)
    y = moe(x[None]).hidden
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y[0].float(), loop_oracle(moe, x).float(), atol=0.05, rtol=0.02)


def test_load_balancing_loss_is_one_when_balanced_and_rises_when_collapsed():
    T, E, K = 64, 8, 2
    uniform_probs = torch.full((T, E), 1 / E)
    balanced_counts = torch.full((E,), T * K // E)
    balanced = router_stats(torch.zeros(T, E), uniform_probs, balanced_counts)
    collapsed_logits = torch.zeros(T, E)
    collapsed_logits[:, :K] = 10.0
    collapsed_counts = torch.zeros(E, dtype=torch.long)
    collapsed_counts[:K] = T
    collapsed = router_stats(collapsed_logits, collapsed_logits.softmax(-1), collapsed_counts)
    torch.testing.assert_close(balanced.load_balancing_loss, torch.tensor(1.0))
    assert collapsed.load_balancing_loss > 3.5  # -> E / K = 4 as routing collapses fully
    assert collapsed.z_loss > balanced.z_loss
    assert collapsed.entropy < balanced.entropy


def test_balancing_loss_gradient_spreads_a_collapsed_router():
    moe = make_moe()
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.gate.weight[0, 0] = 1.0
    opt = torch.optim.SGD(moe.gate.parameters(), lr=2.0)
    x = torch.randn(256, 32)
    x[:, 0] = x[:, 0].abs() + 1
    before = moe(x[None]).router_stats
    for _ in range(30):
        opt.zero_grad()
        moe(x[None]).router_stats.load_balancing_loss.backward()
        opt.step()
    after = moe(x[None]).router_stats
    assert after.load_balancing_loss < before.load_balancing_loss
    assert after.tokens_per_expert.max() < before.tokens_per_expert.max()


def test_aux_loss_free_bias_moves_load_toward_balance():
    moe = make_moe(score_function="sigmoid", moe_router_enable_expert_bias=True, moe_router_bias_update_rate=0.01)
    with torch.no_grad():
        moe.gate.weight[0, 0] = 3.0
        moe.gate.weight[1, 0] = 2.0
    x = torch.randn(256, 32)
    x[:, 0] = x[:, 0].abs()
    start = moe(x[None]).router_stats.tokens_per_expert
    for _ in range(40):
        moe.gate.update_bias(moe(x[None]).router_stats.tokens_per_expert)
    end = moe(x[None]).router_stats.tokens_per_expert
    assert end.max() < start.max()
    assert moe.gate.expert_bias[0] < moe.gate.expert_bias.mean()  # the overloaded expert was pushed down


def test_aligned_token_groups_give_the_same_values_and_gradients():
    moe = make_moe()
    x = torch.randn(2, 9, 32, requires_grad=True)
    grad_out = torch.randn(2, 9, 32)
    results = []
    for align in (1, 8, 16):
        moe.experts.align = align
        y = moe(x).hidden
        (y * grad_out).sum().backward()
        results.append((y.detach(), x.grad.clone(), moe.experts.down_proj.grad.clone()))
        moe.zero_grad()
        x.grad = None
    for got in results[1:]:
        for a, b in zip(got, results[0], strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_gathered_decode_path_reads_only_chosen_experts_and_matches_grouped():
    moe = make_moe()
    x_TD = torch.randn(3, 32)
    routing = moe.gate(x_TD)
    args = (x_TD, routing.expert_idx_TK, routing.weights_TK)
    with torch.no_grad():
        grouped, counts = moe.experts(*args)
        gathered, _ = moe.experts(*args, gathered=True)
        torch.testing.assert_close(gathered, grouped, atol=1e-5, rtol=1e-5)
        moe.experts.gate_proj[counts == 0] = float("nan")  # experts nobody chose are never read
        again, _ = moe.experts(*args, gathered=True)
    assert (counts == 0).any() and not again.isnan().any()
    torch.testing.assert_close(again, gathered)


def test_router_logits_stay_fp32_under_bf16_autocast():
    moe = make_moe()
    x = torch.randn(16, 32)
    plain = moe.gate(x).logits_TE
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = moe.gate(x).logits_TE
        y = moe(x[None]).hidden
    assert logits.dtype == torch.float32 and y.dtype == x.dtype
    torch.testing.assert_close(logits, plain)


def test_dense_and_moe_feed_forwards_return_one_type():
    config = micro_config()
    x = torch.randn(2, 3, config.hidden_size)
    dense = MLP(config.hidden_size, config.intermediate_size)(x)
    moe = make_moe()(x)
    assert isinstance(dense, FeedForwardOutput) and dense.router_stats is None and dense.hidden.shape == x.shape
    assert isinstance(moe, FeedForwardOutput) and moe.hidden.shape == x.shape
    assert int(moe.router_stats.tokens_per_expert.sum()) == 2 * 3 * config.num_experts_per_tok


def test_router_names_its_decision():
    moe = make_moe()
    routing = moe.gate(torch.randn(5, 32))
    assert isinstance(routing, Routing)
    assert routing.expert_idx_TK.shape == routing.weights_TK.shape == (5, 2)
    torch.testing.assert_close(routing.weights_TK.sum(-1), torch.ones(5))  # norm_topk_prob
    torch.testing.assert_close(routing.weights_TK, routing.probs_TE.gather(-1, routing.expert_idx_TK)
                               / routing.probs_TE.gather(-1, routing.expert_idx_TK).sum(-1, keepdim=True))


def routed(moe, x_TD):
    routing = moe.gate(x_TD)
    idx_TK, w_TK = routing.expert_idx_TK, routing.weights_TK
    order = idx_TK.argsort(dim=-1)
    return idx_TK.gather(-1, order).tolist(), w_TK.gather(-1, order)


def test_sigmoid_router_with_expert_bias_matches_a_hand_computation():
    """DeepSeek-V3 / Ling 2.0 routing: the bias picks the experts, the unbiased sigmoid scores weigh them."""
    moe = make_moe(num_experts=4, num_experts_per_tok=2, score_function="sigmoid",
                   moe_router_enable_expert_bias=True, routed_scaling_factor=2.5)
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.gate.weight[:, 0] = torch.tensor([2.0, 1.0, 0.0, -1.0])  # logits = x[0] * these
        moe.gate.expert_bias.copy_(torch.tensor([0.0, 0.0, 0.9, 0.0]))
    x = torch.zeros(1, 32)
    x[0, 0] = 1.0
    # sigmoid scores: 0.8808, 0.7311, 0.5, 0.2689; biased: 0.8808, 0.7311, 1.4, 0.2689 -> experts 0 and 2.
    s0, s2 = 1 / (1 + math.exp(-2.0)), 0.5
    experts, weights = routed(moe, x)
    assert experts == [[0, 2]]
    torch.testing.assert_close(weights, torch.tensor([[s0, s2]]) / (s0 + s2) * 2.5)


def test_expert_groups_limit_the_choice_to_the_best_groups():
    """Two groups of two; one group kept. Without a bias a group scores by its best expert, with one by its
    best two: the group holding the single best expert loses to a group of two good ones."""
    logits = torch.tensor([3.0, -3.0, 1.0, 1.0])
    for bias, want in ((False, [[0, 1]]), (True, [[2, 3]])):
        moe = make_moe(num_experts=4, num_experts_per_tok=2, score_function="sigmoid", n_group=2, topk_group=1,
                       moe_router_enable_expert_bias=bias)
        with torch.no_grad():
            moe.gate.weight.zero_()
            moe.gate.weight[:, 0] = logits
        x = torch.zeros(1, 32)
        x[0, 0] = 1.0
        experts, weights = routed(moe, x)
        assert experts == want, bias
        scores = logits.sigmoid()[want[0]]
        torch.testing.assert_close(weights, (scores / scores.sum())[None])


def test_softmax_router_is_unchanged_by_a_single_group():
    x = torch.randn(9, 32)
    plain, grouped = make_moe(), make_moe(n_group=1, topk_group=1)
    assert torch.equal(plain.gate(x).weights_TK, grouped.gate(x).weights_TK)
