"""The trainer core that pretraining, SFT and DPO share: `start_training` (sharding, AdamW, resume or
refuse to overwrite, metrics sink) returns a `TrainingRun`; `train_step` runs one optimiser step over
micro-batches with any stage's loss (MoE auxiliary losses, clipping, router statistics). The stages
differ only in their batches and loss (`train/pretrain.py`, `train/posttrain.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM, count_parameters
from lingcoder.runfiles import complete_checkpoints
from lingcoder.train.config import TrainConfig
from lingcoder.train.distributed import DistEnv, all_reduce, clip_grad_norm, parallelize
from lingcoder.train.metrics import MetricsSink
from lingcoder.train.state import (
    load_training_checkpoint,
    remove_partial_checkpoints,
    save_training_checkpoint,
)


@dataclass
class TrainingRun:
    """What every stage (pretrain, sft, dpo) sets up the same way around its own batches and loss."""

    config: TrainConfig
    env: DistEnv
    model: BailingMoeForCausalLM  # FSDP2-sharded under torchrun
    forward: Callable  # the model, compiled when train.compile is set
    optimizer: torch.optim.Optimizer
    autocast: contextlib.AbstractContextManager
    sink: MetricsSink
    resumed: dict  # the train state of the checkpoint resumed from; empty for a fresh run

    @property
    def checkpoints(self) -> Path:
        return Path(self.config.out) / "checkpoints"

    def set_lr(self, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def save(self, step: int, state: dict, tokenizer_dir: Path) -> Path:
        """An atomic checkpoint: the model in the HF layout, optimiser, RNGs and the stage's own `state`."""
        return save_training_checkpoint(self.checkpoints, step, self.model, self.optimizer, self.model.config, state,
                                        tokenizer_dir, self.env, self.config.keep_checkpoints)

    def close(self) -> Path:
        """Flush the metrics; return the last complete checkpoint."""
        self.sink.close()
        return complete_checkpoints(self.checkpoints)[-1]


def start_training(t: TrainConfig, model: BailingMoeForCausalLM, env: DistEnv, resume: bool,
                   console: Console) -> TrainingRun:
    """Shard the model, build AdamW, and either resume from the last complete checkpoint under `t.out` or
    refuse to overwrite one."""
    model.model.activation_checkpointing = t.activation_checkpointing
    parallelize(model, env, t.expert_parallel)
    optimizer = make_optimizer(model, t)
    root = Path(t.out) / "checkpoints"
    if env.is_main:
        remove_partial_checkpoints(root)
    state: dict = {}
    if resume:
        found = complete_checkpoints(root)
        if not found:
            raise LingcoderError(f"--resume: no complete checkpoint under {root}")
        state = load_training_checkpoint(found[-1], model, optimizer)
        console.print(f"resuming from {found[-1]} (step {state['progress']['step']})")
    elif complete_checkpoints(root):
        raise LingcoderError(f"{root} already holds checkpoints: pass --resume to continue, or choose another "
                             "output directory")
    forward = torch.compile(model) if t.compile else model
    return TrainingRun(t, env, model, forward, optimizer, autocast_context(t.precision, env.device),
                       MetricsSink(Path(t.out), enabled=env.is_main), state)


def progress_bar(console: Console, env: DistEnv) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not env.is_main)


def train_step(run: TrainingRun, micro_batches: Iterable, loss_fn: Callable) -> dict:
    """One optimiser step. For each micro-batch, `loss_fn(forward, batch)` returns its share of the step's
    objective, its shares of the step's metrics (both summed over micro-batches, then averaged over ranks)
    and the model output, whose MoE auxiliary losses are added here. Returns the step's metrics (all ranks)."""
    t, model, optimizer = run.config, run.model, run.optimizer
    totals = {}
    counts = entropy = None
    try:
        for batch in micro_batches:
            with run.autocast:
                objective, shares, out = loss_fn(run.forward, batch)
            loss = objective if out.aux_loss is None else objective + out.aux_loss / t.grad_accum
            loss.backward()
            for key, value in shares.items():
                totals[key] = totals.get(key, 0.0) + value
            if out.aux_loss is not None:
                for key in ("aux_loss", "load_balancing_loss", "z_loss"):
                    totals[key] = totals.get(key, 0.0) + getattr(out, key).item() / t.grad_accum
                counts = out.tokens_per_expert if counts is None else counts + out.tokens_per_expert
                entropy = out.router_entropy if entropy is None else entropy + out.router_entropy
        grad_norm = clip_grad_norm(list(model.parameters()), t.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    except torch.OutOfMemoryError:
        raise LingcoderError(f"out of memory at micro_batch_size={t.micro_batch_size}: lower micro_batch_size and "
                             "raise grad_accum") from None
    metrics = {k: float(all_reduce(torch.tensor(v))) for k, v in totals.items()}
    metrics["grad_norm"] = float(grad_norm)
    if counts is not None:
        counts = all_reduce(counts.float(), op="sum")
        if model.config.moe_router_bias_update_rate > 0:
            model.update_router_biases(counts)
        load = counts / counts.mean(dim=1, keepdim=True).clamp(min=1e-9)
        metrics["expert_load_max_over_mean"] = [round(float(x), 4) for x in load.max(dim=1).values]
        share = counts / counts.sum(dim=1, keepdim=True)  # each expert's share of a MoE layer's routed tokens
        metrics["expert_load"] = [[round(float(x), 5) for x in row] for row in share]
        metrics["router_entropy"] = [round(float(x), 4) for x in all_reduce(entropy / t.grad_accum)]
    return metrics


def build_model(model_config: BailingMoeConfig, init_from: str, seed: int, device: torch.device
                ) -> BailingMoeForCausalLM:
    """The model in fp32 and training mode: loaded from an HF checkpoint directory, or freshly initialised."""
    if init_from:
        model = BailingMoeForCausalLM.from_pretrained(init_from, dtype=torch.float32, config=model_config)
    else:
        model = BailingMoeForCausalLM(model_config)
        model.init_weights(seed=seed)
    return model.to(device).train()


def make_optimizer(model, t: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, biases or the router bias)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(t.betas), eps=t.eps)


def autocast_context(precision: str, device: torch.device):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_memory(model_config: BailingMoeConfig, micro_batch_size: int, seq_len: int, env: DistEnv,
                 frozen_copies: int = 0) -> None:
    """Refuse a micro-batch that cannot fit before spending any time on it (a coarse upper estimate);
    `frozen_copies` counts extra fp32 models held without gradients (DPO's reference)."""
    need = estimated_bytes(model_config, micro_batch_size, seq_len, env.world_size, frozen_copies)
    available = available_bytes(env.device)
    if available and need > available:
        raise LingcoderError(
            f"micro_batch_size={micro_batch_size} with seq_len={seq_len} needs about {need / 2**30:.1f} GiB, but "
            f"{env.device} has {available / 2**30:.1f} GiB free: lower micro_batch_size (and raise grad_accum to "
            "keep the batch)")


def estimated_bytes(m: BailingMoeConfig, micro_batch_size: int, seq_len: int, world_size: int,
                    frozen_copies: int = 0) -> int:
    total, _ = count_parameters(m)
    weights_grads_adam = total * (16 + 4 * frozen_copies) / world_size  # fp32 weights, grads, two Adam moments
    tokens = micro_batch_size * seq_len
    moe_width = m.num_experts_per_tok * m.moe_intermediate_size + m.shared_intermediate_size
    per_token_layer = 4 * (16 * m.hidden_size + 3 * moe_width)  # fp32 activations kept for backward
    logits = 3 * 4 * m.vocab_size  # logits, their fp32 copy and gradient
    return int(weights_grads_adam + tokens * (m.num_hidden_layers * per_token_layer + logits))


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
