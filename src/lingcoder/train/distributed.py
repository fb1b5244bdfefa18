"""Processes and devices: one process per device under `torchrun`, FSDP2 (`fully_shard`) per block,
and optionally expert parallelism on a 2-D device mesh.

Without torchrun (no WORLD_SIZE) everything runs in this one process and nothing is sharded.
CPU runs use the gloo backend, so the multi-process path is testable without a GPU.

With `expert_parallel = P` the W processes form a ("fsdp", "ep") mesh of shape (W / P, P): consecutive
ranks (one node's GPUs) share out every MoE layer's experts, and each expert slice is FSDP-sharded over
the W / P processes that hold the same slice. Everything else is FSDP-sharded over all W processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lingcoder.errors import LingcoderError


@dataclass
class DistEnv:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistEnv:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if want_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        resolved = torch.device("cuda", local_rank)
    else:
        resolved = torch.device("cpu" if device == "auto" else device)
    return DistEnv(rank, world_size, resolved)


def shard_model(model: torch.nn.Module) -> None:
    """FSDP2: each decoder block is one unit (gathered just before it runs), then the rest."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)


def parallelize(model: torch.nn.Module, env: DistEnv, expert_parallel: int = 1) -> None:
    """Shard `model` over the processes: FSDP2 alone, or experts split over EP groups of `expert_parallel`
    consecutive ranks with FSDP2 over the rest (see the module docstring). One process: nothing to do."""
    if expert_parallel < 1 or env.world_size % expert_parallel:
        raise LingcoderError(f"expert_parallel={expert_parallel} must be >= 1 and divide the number of processes "
                             f"({env.world_size}): launch with torchrun --nproc_per_node a multiple of it")
    if env.world_size == 1:
        return
    if expert_parallel > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from lingcoder.model.expert_parallel import moe_layers, shard_experts

        mesh = init_device_mesh(env.device.type, (env.world_size // expert_parallel, expert_parallel),
                                mesh_dim_names=("fsdp", "ep"))
        shard_experts(model, mesh["ep"].get_group())
        for moe in moe_layers(model):
            fully_shard(moe.experts, mesh=mesh["fsdp"])
    shard_model(model)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Clip the gradients to a total L2 norm of `max_norm`; return the norm before clipping.

    Every gradient element lives on exactly one process (FSDP2 shards, expert slices) or, in one process,
    here: the total is the square root of the sum over processes of each one's local squares."""
    grads = [p.grad for p in parameters if p.grad is not None]
    local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    device = local[0].device if local else torch.device("cpu")
    squares = torch.zeros((), device=device, dtype=torch.float32)
    for g in local:
        squares += g.detach().float().square().sum()
    total = all_reduce(squares, op="sum").sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in local:
        g.detach().mul_(scale.to(g.dtype))
    return total


def all_reduce(tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        if op == "mean":
            tensor /= dist.get_world_size()
    return tensor


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
