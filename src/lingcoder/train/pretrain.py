"""`lingcoder pretrain`: phases of mixtures and LR schedules over the tokenized corpus, next-token loss,
validation per source, atomic checkpoints with the sampler's position (exact resume); the optimiser
step, sharding and resume come from the shared trainer core (`train/trainer.py`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from lingcoder.data.shards import TokenIndex
from lingcoder.errors import LingcoderError
from lingcoder.model import count_parameters
from lingcoder.train.config import PretrainConfig
from lingcoder.train.data import Batch, MixtureSampler, validation_batches
from lingcoder.train.distributed import DistEnv, init_distributed
from lingcoder.train.metrics import flops_per_token, peak_flops
from lingcoder.train.schedules import learning_rate
from lingcoder.train.trainer import build_model, check_memory, progress_bar, start_training, train_step


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


def next_token_loss(forward, batch: Batch, grad_accum: int):
    """Pretraining's loss: mean next-token cross-entropy over every position of the micro-batch."""
    out = forward(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids)
    lm_loss = F.cross_entropy(out.logits.float().flatten(0, 1), batch.targets.flatten())
    return lm_loss / grad_accum, {"lm_loss": lm_loss.item() / grad_accum}, out


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


def to_device(batch: Batch, device: torch.device) -> Batch:
    return Batch(batch.input_ids.to(device), batch.targets.to(device), batch.document_ids.to(device),
                 batch.position_ids.to(device), batch.sources)


def check_vocabulary(index: TokenIndex, config: PretrainConfig) -> None:
    if index.vocab_size > config.model.vocab_size:
        raise LingcoderError(f"{index.directory} was tokenized with a vocabulary of {index.vocab_size} tokens, "
                             f"more than the model's vocab_size {config.model.vocab_size}: set model.vocab_size "
                             f">= {index.vocab_size} or retrain the tokenizer")


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
