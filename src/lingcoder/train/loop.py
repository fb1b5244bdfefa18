"""`lingcoder pretrain`: the training loop (phases of mixtures and LR schedules, AdamW, gradient
accumulation, bf16 autocast on GPU, validation, metrics, atomic checkpoints, exact resume, FSDP2).

One loop, written to be reused: SFT and DPO differ only in their batches and loss.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lingcoder.data.shards import TokenIndex
from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeForCausalLM, count_parameters
from lingcoder.train.config import PretrainConfig
from lingcoder.train.data import Batch, MixtureSampler, validation_batches
from lingcoder.train.distributed import DistEnv, all_reduce, init_distributed, shard_model
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

    model = build_model(config, env.device)
    check_memory(config, env)
    if env.world_size > 1:
        shard_model(model)
    optimizer = make_optimizer(model, config)
    out = Path(t.out)
    root = out / "checkpoints"
    progress = {"step": 0, "phase": 0, "phase_step": 0, "tokens": 0}
    if env.is_main:
        remove_partial_checkpoints(root)
    if resume:
        found = complete_checkpoints(root)
        if not found:
            raise LingcoderError(f"--resume: no complete checkpoint under {root}")
        state = load_training_checkpoint(found[-1], model, optimizer)
        sampler.load_state_dict(state["sampler"])
        progress = state["progress"]
        console.print(f"resuming from {found[-1]} (step {progress['step']})")
    elif complete_checkpoints(root):
        raise LingcoderError(f"{root} already holds checkpoints: pass --resume to continue, or choose another "
                             "train.out")

    steps_per_phase = config.phase_steps(env.world_size)
    total_steps = sum(steps_per_phase)
    tokens_per_step = config.tokens_per_step(env.world_size)
    unigram = unigram_entropy(index, sources)
    flops_token = flops_per_token(config.model, config.data.seq_len)
    peak, peak_source = peak_flops(env.device, t.peak_tflops)
    sink = MetricsSink(out, enabled=env.is_main)
    total, active = count_parameters(config.model)
    console.print(f"pretraining {total / 1e6:.1f}M parameters ({active / 1e6:.1f}M activated) on {env.device} "
                  f"x{env.world_size}: {total_steps} steps of {tokens_per_step:,} tokens over "
                  f"{len(config.phases)} phase(s); data unigram entropy {unigram:.3f} nats/token")
    forward = torch.compile(model) if t.compile else model
    autocast = autocast_context(t.precision, env.device)
    tokenizer_dir = Path(config.data.tokens)
    last_train = last_val = float("nan")

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not env.is_main)
    with bar:
        task = bar.add_task("pretrain", total=total_steps, completed=progress["step"])
        for phase_index in range(progress["phase"], len(config.phases)):
            phase = config.phases[phase_index]
            while progress["phase_step"] < steps_per_phase[phase_index]:
                lr = learning_rate(phase.schedule, progress["phase_step"], steps_per_phase[phase_index])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                start = time.perf_counter()
                stats = train_step(forward, model, optimizer, sampler, phase.mixture, config, env, autocast)
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
                    sink.write(record)
                bar.update(task, advance=1, description=f"{phase.name} loss {last_train:.3f} lr {lr:.2e} "
                                                        f"{tokens_per_s:,.0f} tok/s")
                phase_done = progress["phase_step"] == steps_per_phase[phase_index]
                if val_sources and (step % t.eval_every == 0 or phase_done):
                    val = evaluate(forward, index, val_sources, config, env, autocast)
                    last_val = val["val_loss"]
                    sink.write({"kind": "val", "step": step, "phase": phase.name, "tokens": progress["tokens"],
                                **val})
                if phase_done:
                    progress.update(phase=phase_index + 1, phase_step=0)
                if step % t.checkpoint_every == 0 or phase_done:
                    save_training_checkpoint(root, step, model, optimizer, config.model,
                                             {"progress": dict(progress), "sampler": sampler.state_dict()},
                                             tokenizer_dir, env, t.keep_checkpoints)
                if phase_done:
                    break
    sink.close()
    final = complete_checkpoints(root)[-1]
    console.print(f"done: {progress['step']} steps, {progress['tokens']:,} tokens; train loss {last_train:.3f}, "
                  f"validation loss {last_val:.3f} vs unigram entropy {unigram:.3f} nats/token; MFU peak "
                  f"{peak_source}; checkpoint {final}")
    return PretrainResult(out, final, progress["step"], progress["tokens"], last_train, last_val, unigram)


def train_step(forward, model, optimizer, sampler: MixtureSampler, mixture, config: PretrainConfig,
               env: DistEnv, autocast) -> dict:
    """One optimiser step over `grad_accum` micro-batches; returns this step's metrics (all ranks)."""
    t = config.train
    totals = {"lm_loss": 0.0, "aux_loss": 0.0, "load_balancing_loss": 0.0, "z_loss": 0.0}
    counts = entropy = None
    try:
        for _ in range(t.grad_accum):
            batch = to_device(sampler.next_batch(mixture, t.micro_batch_size * env.world_size, env.rank,
                                                 t.micro_batch_size), env.device)
            with autocast:
                out = forward(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids)
            lm_loss = F.cross_entropy(out.logits.float().flatten(0, 1), batch.targets.flatten())
            loss = lm_loss if out.aux_loss is None else lm_loss + out.aux_loss
            (loss / t.grad_accum).backward()
            totals["lm_loss"] += lm_loss.item() / t.grad_accum
            if out.aux_loss is not None:
                totals["aux_loss"] += out.aux_loss.item() / t.grad_accum
                totals["load_balancing_loss"] += out.load_balancing_loss.item() / t.grad_accum
                totals["z_loss"] += out.z_loss.item() / t.grad_accum
                counts = out.tokens_per_expert if counts is None else counts + out.tokens_per_expert
                entropy = out.router_entropy if entropy is None else entropy + out.router_entropy
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    except torch.OutOfMemoryError:
        raise LingcoderError(f"out of memory at train.micro_batch_size={t.micro_batch_size}, data.seq_len="
                             f"{config.data.seq_len}: lower micro_batch_size and raise grad_accum") from None
    metrics = {k: float(all_reduce(torch.tensor(v))) for k, v in totals.items()}
    metrics["grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    if counts is not None:
        counts = all_reduce(counts.float(), op="sum")
        if config.model.moe_router_bias_update_rate > 0:
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
        loss_sum, tokens = 0.0, 0
        for batch in validation_batches(index, source, config.data.seq_len, config.data.eval_tokens,
                                        config.train.micro_batch_size):
            batch = to_device(batch, env.device)
            with autocast:
                logits = forward(batch.input_ids, position_ids=batch.position_ids,
                                 document_ids=batch.document_ids).logits
            loss_sum += F.cross_entropy(logits.float().flatten(0, 1), batch.targets.flatten(), reduction="sum").item()
            tokens += batch.targets.numel()
        by_source[source] = loss_sum / tokens
        total_loss, total_tokens = total_loss + loss_sum, total_tokens + tokens
    forward.train(was_training)
    return {"val_loss": total_loss / total_tokens, "val_loss_by_source": by_source}


def build_model(config: PretrainConfig, device: torch.device) -> BailingMoeForCausalLM:
    if config.train.init_from:
        model = BailingMoeForCausalLM.from_pretrained(config.train.init_from, dtype=torch.float32,
                                                      config=config.model)
    else:
        model = BailingMoeForCausalLM(config.model)
        model.init_weights(seed=config.train.seed)
    return model.to(device).train()


def make_optimizer(model, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, biases or the router bias)."""
    t = config.train
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


def check_memory(config: PretrainConfig, env: DistEnv) -> None:
    """Refuse a micro-batch that cannot fit before spending any time on it (a coarse upper estimate)."""
    need = estimated_bytes(config, env.world_size)
    available = available_bytes(env.device)
    if available and need > available:
        raise LingcoderError(
            f"train.micro_batch_size={config.train.micro_batch_size} with data.seq_len={config.data.seq_len} needs "
            f"about {need / 2**30:.1f} GiB, but {env.device} has {available / 2**30:.1f} GiB free: lower "
            "micro_batch_size (and raise grad_accum to keep the batch)")


def estimated_bytes(config: PretrainConfig, world_size: int) -> int:
    m = config.model
    total, _ = count_parameters(m)
    weights_grads_adam = total * 16 / world_size  # fp32 weights, grads, two Adam moments
    tokens = config.train.micro_batch_size * config.data.seq_len
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
