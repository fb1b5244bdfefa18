"""`lingcoder pretrain`: the training loop (phases of mixtures and LR schedules, AdamW, gradient
accumulation, bf16 autocast on GPU, validation, metrics, atomic checkpoints, exact resume, FSDP2).

One loop, written to be reused: `start_training` (sharding, AdamW, resume or refuse to overwrite, metrics
sink) and `train_step` (micro-batches, MoE auxiliary losses, clipping, router statistics) serve `lingcoder
sft` and `lingcoder dpo` too, which differ only in their batches and loss (see `train/posttrain.py`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lingcoder.data.shards import TokenIndex
from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM, count_parameters
from lingcoder.train.config import PretrainConfig, TrainConfig
from lingcoder.train.data import Batch, MixtureSampler, validation_batches
from lingcoder.train.distributed import DistEnv, all_reduce, clip_grad_norm, init_distributed, parallelize
from lingcoder.train.metrics import MetricsSink, flops_per_token, peak_flops
from lingcoder.train.schedules import learning_rate
from lingcoder.train.state import (
    complete_checkpoints,
    load_training_checkpoint,
    remove_partial_checkpoints,
    save_training_checkpoint,
)


@dataclass
class PretrainResult:
    out: Path
    checkpoint: Path
    steps: int
    tokens: int
    train_loss: float
    val_loss: float
    unigram_entropy: float


def pretrain(config: PretrainConfig, resume: bool = False, console: Console | None = None) -> PretrainResult:
    env = init_distributed(config.train.device)
    console = console or Console(quiet=not env.is_main)
    t = config.train
    torch.manual_seed(t.seed)
    index = TokenIndex(config.data.tokens)
    check_vocabulary(index, config)
    sources = sorted({s for phase in config.phases for s in phase.mixture})
    sampler = MixtureSampler(index, sources, config.data.seq_len, t.seed)
    val_sources = [s for s in sources if index.num_tokens(s, "val") > config.data.seq_len]

    model = build_model(config.model, t.init_from, t.seed, env.device)
    check_memory(config.model, t.micro_batch_size, config.data.seq_len, env)
    run = start_training(t, model, env, resume, console)
    progress = {"step": 0, "phase": 0, "phase_step": 0, "tokens": 0}
    if run.resumed:
        sampler.load_state_dict(run.resumed["sampler"])
        progress = run.resumed["progress"]

    steps_per_phase = config.phase_steps(env.world_size)
    total_steps = sum(steps_per_phase)
    tokens_per_step = config.tokens_per_step(env.world_size)
    unigram = unigram_entropy(index, sources)
    flops_token = flops_per_token(config.model, config.data.seq_len)
    peak, peak_source = peak_flops(env.device, t.peak_tflops)
    total, active = count_parameters(config.model)
    console.print(f"pretraining {total / 1e6:.1f}M parameters ({active / 1e6:.1f}M activated) on {env.device} "
                  f"x{env.world_size}: {total_steps} steps of {tokens_per_step:,} tokens over "
                  f"{len(config.phases)} phase(s); data unigram entropy {unigram:.3f} nats/token")
    tokenizer_dir = Path(config.data.tokens)
    last_train = last_val = float("nan")

    bar = progress_bar(console, env)
    with bar:
        task = bar.add_task("pretrain", total=total_steps, completed=progress["step"])
        for phase_index in range(progress["phase"], len(config.phases)):
            phase = config.phases[phase_index]
            while progress["phase_step"] < steps_per_phase[phase_index]:
                lr = run.set_lr(learning_rate(phase.schedule, progress["phase_step"], steps_per_phase[phase_index]))
                start = time.perf_counter()
                micro_batches = (to_device(sampler.next_batch(phase.mixture, t.micro_batch_size * env.world_size,
                                                              env.rank, t.micro_batch_size), env.device)
                                 for _ in range(t.grad_accum))
                stats = train_step(run, micro_batches, partial(next_token_loss, grad_accum=t.grad_accum))
                elapsed = time.perf_counter() - start
                progress["step"] += 1
                progress["phase_step"] += 1
                progress["tokens"] += tokens_per_step
                step = progress["step"]
                last_train = stats["lm_loss"]
                tokens_per_s = tokens_per_step / elapsed
                record = {"kind": "train", "step": step, "phase": phase.name, "tokens": progress["tokens"],
                          "lr": lr, **stats, "tokens_per_s": tokens_per_s, "step_time_s": elapsed,
                          "mfu": tokens_per_s * flops_token / peak if peak else None}
                if step % t.log_every == 0 or step == total_steps:
                    run.sink.write(record)
                bar.update(task, advance=1, description=f"{phase.name} loss {last_train:.3f} lr {lr:.2e} "
                                                        f"{tokens_per_s:,.0f} tok/s")
                phase_done = progress["phase_step"] == steps_per_phase[phase_index]
                if val_sources and (step % t.eval_every == 0 or phase_done):
                    val = evaluate(run.forward, index, val_sources, config, env, run.autocast)
                    last_val = val["val_loss"]
                    run.sink.write({"kind": "val", "step": step, "phase": phase.name, "tokens": progress["tokens"],
                                **val})
                if phase_done:
                    progress.update(phase=phase_index + 1, phase_step=0)
                if step % t.checkpoint_every == 0 or phase_done:
                    run.save(step, {"progress": dict(progress), "sampler": sampler.state_dict()}, tokenizer_dir)
                if phase_done:
                    break
    final = run.close()
    console.print(f"done: {progress['step']} steps, {progress['tokens']:,} tokens; train loss {last_train:.3f}, "
                  f"validation loss {last_val:.3f} vs unigram entropy {unigram:.3f} nats/token; MFU peak "
                  f"{peak_source}; checkpoint {final}")
    return PretrainResult(Path(t.out), final, progress["step"], progress["tokens"], last_train, last_val, unigram)


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


def next_token_loss(forward, batch: Batch, grad_accum: int):
    """Pretraining's loss: mean next-token cross-entropy over every position of the micro-batch."""
    out = forward(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids)
    lm_loss = F.cross_entropy(out.logits.float().flatten(0, 1), batch.targets.flatten())
    return lm_loss / grad_accum, {"lm_loss": lm_loss.item() / grad_accum}, out


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


@torch.no_grad()
def evaluate(forward, index: TokenIndex, sources: list[str], config: PretrainConfig, env: DistEnv,
             autocast) -> dict:
    """Mean next-token loss on each source's validation windows (every rank computes the same)."""
    was_training = forward.training
    forward.eval()
    by_source, total_loss, total_tokens = {}, 0.0, 0
    for source in sources:
        loss_sum, tokens = validation_loss_sum(forward, index, source, config.data.seq_len, config.data.eval_tokens,
                                               config.train.micro_batch_size, env.device, autocast)
        by_source[source] = loss_sum / tokens
        total_loss, total_tokens = total_loss + loss_sum, total_tokens + tokens
    forward.train(was_training)
    return {"val_loss": total_loss / total_tokens, "val_loss_by_source": by_source}


@torch.no_grad()
def validation_loss_sum(forward, index: TokenIndex, source: str, seq_len: int, max_tokens: int, batch_size: int,
                        device: torch.device, autocast=None) -> tuple[float, int]:
    """(summed next-token loss, tokens) over the first `max_tokens` of a source's validation split."""
    loss_sum, tokens = 0.0, 0
    for batch in validation_batches(index, source, seq_len, max_tokens, batch_size):
        batch = to_device(batch, device)
        with autocast or contextlib.nullcontext():
            logits = forward(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids).logits
        loss_sum += F.cross_entropy(logits.float().flatten(0, 1), batch.targets.flatten(), reduction="sum").item()
        tokens += batch.targets.numel()
    return loss_sum, tokens


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


def to_device(batch: Batch, device: torch.device) -> Batch:
    return Batch(batch.input_ids.to(device), batch.targets.to(device), batch.document_ids.to(device),
                 batch.position_ids.to(device), batch.sources)


def check_vocabulary(index: TokenIndex, config: PretrainConfig) -> None:
    if index.vocab_size > config.model.vocab_size:
        raise LingcoderError(f"{index.directory} was tokenized with a vocabulary of {index.vocab_size} tokens, "
                             f"more than the model's vocab_size {config.model.vocab_size}: set model.vocab_size "
                             f">= {index.vocab_size} or retrain the tokenizer")


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


def unigram_entropy(index: TokenIndex, sources: list[str], max_tokens: int = 20_000_000) -> float:
    """Entropy (nats/token) of the training tokens' unigram distribution: the loss of a model that
    ignores context, the bar a trained model must clear."""
    counts = np.zeros(index.vocab_size, dtype=np.int64)
    for source in sources:
        stream = index.stream(source, "train")
        for shard in stream.tokens:
            counts += np.bincount(np.asarray(shard[:max_tokens]), minlength=index.vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum()) if len(p) else math.nan
