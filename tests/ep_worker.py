"""Run under torchrun by test_expert_parallel.py: an expert-parallel (optionally x FSDP2) model against the
same model whole in this process, on each process's share of one global batch.

    torchrun --nproc_per_node W tests/ep_worker.py EP

Checks, for random routing (uneven splits) and for routing steered so that some experts and a whole
process receive no tokens: each process's loss, the gradients of every parameter (expert slices against
the matching rows of the whole model's), the clipped gradient norm, one AdamW step, and the gathered
full state dict, and that state (model and optimiser) loaded into a fresh sharded model continuing
identically. Prints "ok <case>" per passed case; any mismatch raises.
"""

import copy
import dataclasses
import sys

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from lingcoder.model import BailingMoeForCausalLM
from lingcoder.model.config import BailingMoeConfig
from lingcoder.model.expert_parallel import expert_shards, gather_experts, slice_experts
from lingcoder.train.distributed import clip_grad_norm, init_distributed, parallelize

TOL = {"atol": 2e-5, "rtol": 1e-4}


def config() -> BailingMoeConfig:
    base = BailingMoeConfig.preset(
        "tiny", vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, num_experts=8, num_experts_per_tok=2, num_shared_experts=1, moe_intermediate_size=16,
        intermediate_size=48, max_position_embeddings=64, norm_head=True,
    )
    return dataclasses.replace(base, score_function="sigmoid", moe_router_enable_expert_bias=True,
                               moe_router_bias_update_rate=1e-3, router_z_loss_coef=1e-3)


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def check_case(name: str, reference: BailingMoeForCausalLM, expert_parallel: int, env) -> None:
    world, rank = env.world_size, env.rank
    model = copy.deepcopy(reference)
    parallelize(model, env, expert_parallel)
    shards = expert_shards(model)
    assert len(shards) == 3 * 2, shards.keys()

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (2 * world, 12), generator=g)
    mine = ids[2 * rank : 2 * rank + 2]

    out = model(mine, labels=mine)
    out.loss.backward()
    ref_losses = []
    for r in range(world):  # the same global batch, one process: the mean of the per-process objectives
        ref_out = reference(ids[2 * r : 2 * r + 2], labels=ids[2 * r : 2 * r + 2])
        (ref_out.loss / world).backward()
        ref_losses.append(ref_out)
    torch.testing.assert_close(out.loss, ref_losses[rank].loss, **TOL)
    torch.testing.assert_close(out.tokens_per_expert, ref_losses[rank].tokens_per_expert)

    ref_grads = {n: p.grad for n, p in reference.named_parameters()}
    for n, p in model.named_parameters():
        grad = full(p.grad)
        want = ref_grads[n]
        if n in shards:
            ep = shards[n]
            want = want[ep.first : ep.first + ep.num_local]
        torch.testing.assert_close(grad, want, **TOL, msg=f"{name}: gradient of {n}")

    norm = clip_grad_norm(list(model.parameters()), 0.05)
    ref_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
    torch.testing.assert_close(norm, ref_norm, **TOL)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    for run_model, run_opt in ((model, opt), (reference, ref_opt)):
        run_opt.step()
        run_model.zero_grad(set_to_none=True)
    with torch.no_grad():
        torch.testing.assert_close(model(mine, labels=mine).loss, reference(mine, labels=mine).loss, **TOL)

    whole = StateDictOptions(full_state_dict=True)
    state = gather_experts(get_model_state_dict(model, options=whole), model, env.device)
    for key, tensor in reference.state_dict().items():
        torch.testing.assert_close(state[key], tensor, **TOL, msg=f"{name}: gathered {key}")
    optim = get_optimizer_state_dict(model, opt, options=whole)
    optim["state"] = gather_experts(optim["state"], model, env.device, opt)

    # Both whole states, sliced into a fresh sharded model and optimiser, give back the same whole states.
    fresh = copy.deepcopy(reference)
    parallelize(fresh, env, expert_parallel)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    set_model_state_dict(fresh, slice_experts(state, fresh), options=whole)
    set_optimizer_state_dict(fresh, fresh_opt, {**optim, "state": slice_experts(optim["state"], fresh)},
                             options=whole)
    again = gather_experts(get_model_state_dict(fresh, options=whole), fresh, env.device)
    again_optim = get_optimizer_state_dict(fresh, fresh_opt, options=whole)
    again_optim = gather_experts(again_optim["state"], fresh, env.device, fresh_opt)
    for key, tensor in state.items():
        torch.testing.assert_close(again[key], tensor, atol=0, rtol=0, msg=f"{name}: reloaded {key}")
    for key, per_param in optim["state"].items():
        for k, value in per_param.items():
            torch.testing.assert_close(again_optim[key][k], value, atol=0, rtol=0, msg=f"{name}: reloaded {key} {k}")
    with torch.no_grad():
        torch.testing.assert_close(fresh(mine, labels=mine).loss, model(mine, labels=mine).loss, atol=0, rtol=0)
    print(f"ok {name} rank {rank}", flush=True)


def main() -> None:
    expert_parallel = int(sys.argv[1])
    env = init_distributed("cpu")
    torch.manual_seed(0)
    reference = BailingMoeForCausalLM(config())
    reference.init_weights(seed=0)
    check_case("random-routing", reference, expert_parallel, env)

    torch.manual_seed(0)
    steered = BailingMoeForCausalLM(config())
    steered.init_weights(seed=0)
    with torch.no_grad():  # only experts 0..2 are ever chosen: 3..7, and the whole second EP process, get none
        for layer in steered.model.layers:
            layer.mlp.gate.expert_bias[3:] = -1e4
    check_case("idle-experts", steered, expert_parallel, env)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
