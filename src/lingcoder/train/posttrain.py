"""What `lingcoder sft` and `lingcoder dpo` share: start from a checkpoint, read chat records with its
tokenizer and chat template, pack them, and run epochs with the pretraining loop's pieces
(`start_training`, `train_step`: AdamW, schedule, autocast, FSDP2, clipping, checkpoints and exact
resume, metrics). Each stage brings an `Objective`: its loss, what normalises it, its validation.

Outputs, as for pretraining: `OUT/metrics.jsonl`, `OUT/checkpoints/step-N/`; plus `OUT/data.json`
(records read, used, skipped, split, packing) and `OUT/bad_records.jsonl` (every skipped record).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import torch
from rich.console import Console

from lingcoder.config import ConfigError, apply_overrides, from_dict, load_toml
from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeConfig, count_parameters
from lingcoder.runfiles import complete_checkpoints, read_metrics
from lingcoder.train.chat import ChatRenderer
from lingcoder.train.config import TrainConfig, check_train_fields
from lingcoder.train.distributed import init_distributed
from lingcoder.train.metrics import flops_per_token, peak_flops
from lingcoder.train.packing import (
    PackedBatch,
    pack,
    packed_batch,
    plan_fingerprint,
    plan_steps,
    rank_rows,
    split_validation,
)
from lingcoder.train.records import Example, read_examples, write_bad_records
from lingcoder.train.schedules import ScheduleConfig, learning_rate
from lingcoder.train.trainer import TrainingRun, build_model, check_memory, progress_bar, start_training, train_step

C = TypeVar("C", bound="PostTrainConfig")


@dataclass
class PostTrainConfig(TrainConfig):
    """The `[train]` fields of pretraining (optimiser, precision, logging, checkpoints) plus the data."""

    data: list[str] = field(default_factory=list)  # JSONL files of records
    init_from: str = ""  # a checkpoint directory, or a training output directory (its last complete checkpoint)
    seq_len: int = 1024  # tokens per packed row; a longer example is a bad record
    epochs: int = 1
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # over all steps of all epochs
    val_fraction: float = 0.05  # examples held out for validation (by a hash of their content)
    on_bad_record: Literal["skip", "fail"] = "skip"


@dataclass
class PostTrainResult:
    out: Path
    checkpoint: Path  # the final one
    steps: int
    losses: list[float]  # the stage's loss at every logged step
    metrics: dict  # {"train": last train record, "val": last validation record}
    data: dict  # records read / used / bad, train and validation examples, rows per epoch


class Objective(Protocol):
    loss_key: str  # the metric reported as the step's loss

    def weight(self, example: Example) -> int:
        """The example's share of the step's normaliser (SFT: its trained tokens; DPO: one pair)."""

    def loss(self, forward, batch: PackedBatch, scale: float):
        """(objective x scale, metric shares x scale, model output), as `train_step` wants."""

    def validate(self, forward, batches) -> dict:
        """Validation metrics over `batches` (no gradients, model in eval mode)."""


def load_stage_config(cls: type[C], table: str, path: str | Path, overrides: list[str] = ()) -> C:
    """The `[table]` of a TOML file (other tables ignored), with `--set table.key=value` overrides."""
    data = apply_overrides(load_toml(path), list(overrides))
    if table not in data:
        raise ConfigError(f"{path}: no [{table}] table")
    return from_dict(cls, data[table], where=table)


def resolve_checkpoint(init_from: str, table: str) -> Path:
    """A checkpoint directory as given, or the last complete checkpoint of a training output directory."""
    if not init_from:
        raise LingcoderError(f"{table}.init_from: a checkpoint directory (or a training output directory) is needed")
    path = Path(init_from)
    if (path / "config.json").is_file():
        return path
    found = complete_checkpoints(path / "checkpoints")
    if found:
        return found[-1]
    raise LingcoderError(f"{table}.init_from: {path} is neither a checkpoint directory (with config.json) nor a "
                         "training output directory with a complete checkpoint")


def check_config(c: PostTrainConfig, model: BailingMoeConfig, table: str) -> None:
    check_train_fields(c, table)
    if c.epochs <= 0:
        raise LingcoderError(f"{table}.epochs must be > 0")
    if not 2 <= c.seq_len <= model.max_position_embeddings:
        raise LingcoderError(f"{table}.seq_len {c.seq_len} must be in [2, the model's max_position_embeddings "
                             f"{model.max_position_embeddings}]")
    if not 0 <= c.val_fraction < 1:
        raise LingcoderError(f"{table}.val_fraction must be in [0, 1), got {c.val_fraction}")


def run_posttraining(config: PostTrainConfig, table: str, to_conversations: Callable, make_objective: Callable,
                     resume: bool, console: Console | None, frozen_models: int = 0) -> PostTrainResult:
    """The shared SFT / DPO run. `to_conversations(record)` -> the conversations of one example;
    `make_objective(checkpoint, examples, batches, env, console)` -> the stage's Objective, where
    `batches(rows)` yields this process's packed micro-batches of `rows` on its device. `frozen_models`:
    extra copies of the model the objective holds (for the memory check)."""
    env = init_distributed(config.device)
    console = console or Console(quiet=not env.is_main)
    torch.manual_seed(config.seed)
    checkpoint = resolve_checkpoint(config.init_from, table)
    model_config = BailingMoeConfig.load(checkpoint)
    check_config(config, model_config, table)
    out = Path(config.out)
    capacity = config.seq_len + 1

    renderer = ChatRenderer.from_checkpoint(checkpoint)
    records = read_examples(config.data, to_conversations, renderer, capacity, config.on_bad_record, table)
    examples = records.examples
    train, val = split_validation(examples, config.val_fraction, config.seed)
    if not train:
        raise LingcoderError(f"{table}.val_fraction={config.val_fraction} leaves no training example")
    rows_per_step = config.micro_batch_size * config.grad_accum * env.world_size
    steps = plan_steps(examples, train, capacity, config.epochs, config.seed, rows_per_step)
    val_rows = pack([e.num_tokens for e in examples], val, capacity)
    fingerprint = f"{table}:{renderer.fingerprint}:{plan_fingerprint(examples, steps, capacity)}"
    filled = sum(1 for step in steps for row in step.rows if row)
    trained_tokens = config.epochs * sum(examples[i].num_tokens for i in train)
    data = {**records.summary(), "files": list(config.data), "train_examples": len(train), "val_examples": len(val),
            "steps": len(steps), "rows": filled, "packing_efficiency": round(trained_tokens / (filled * capacity), 4)}
    if env.is_main:
        write_bad_records(records, out)
        (out / "data.json").write_text(json.dumps(data, indent=2) + "\n")
    _report_data(console, data, records.bad, out)

    def to_batch(rows: list[list[int]]) -> PackedBatch:
        return packed_batch(examples, rows, capacity, model_config.pad_token_id).to(env.device)

    def batches(rows: list[list[int]], shard: bool = True):
        """Micro-batches of `rows`: this process's share (every process gets as many), or all of them."""
        size = config.micro_batch_size * (env.world_size if shard else 1)
        rows = rows + [[] for _ in range(-len(rows) % size)]
        for micro in range(len(rows) // size):
            yield to_batch(rank_rows(rows, micro, config.micro_batch_size, env.rank if shard else 0,
                                     env.world_size if shard else 1))

    model = build_model(model_config, str(checkpoint), config.seed, env.device)
    check_memory(model_config, config.micro_batch_size, config.seq_len, env, frozen_copies=frozen_models)
    objective: Objective = make_objective(checkpoint, examples, batches, env, console)
    run = start_training(config, model, env, resume, console)
    progress = {"step": 0, "tokens": 0}
    if run.resumed:
        if run.resumed.get("plan") != fingerprint:
            raise LingcoderError(f"{run.checkpoints}: the records, tokenizer or batch settings (seq_len, epochs, "
                                 "seed, batch sizes, processes) changed since this run started, so it cannot resume "
                                 "exactly: restore them, or start a new output directory")
        progress = run.resumed["progress"]

    total, active = count_parameters(model_config)
    console.print(f"{table}: {total / 1e6:.1f}M parameters ({active / 1e6:.1f}M activated) from {checkpoint} on "
                  f"{env.device} x{env.world_size}: {len(steps)} steps of {rows_per_step} rows x {capacity} tokens "
                  f"over {config.epochs} epoch(s)")
    flops_token = flops_per_token(model_config, config.seq_len)
    peak, _ = peak_flops(env.device, config.peak_tflops)
    last_train: dict = {}
    last_val: dict = {}
    bar = progress_bar(console, env)
    with bar:
        task = bar.add_task(table, total=len(steps), completed=progress["step"])
        while progress["step"] < len(steps):
            step_plan = steps[progress["step"]]
            lr = run.set_lr(learning_rate(config.schedule, progress["step"], len(steps)))
            start = time.perf_counter()
            in_step = [i for row in step_plan.rows for i in row]
            scale = env.world_size / sum(objective.weight(examples[i]) for i in in_step)
            micro_batches = (to_batch(rank_rows(step_plan.rows, m, config.micro_batch_size, env.rank,
                                                env.world_size)) for m in range(config.grad_accum))
            stats = train_step(run, micro_batches, partial(objective.loss, scale=scale))
            elapsed = time.perf_counter() - start
            tokens = sum(examples[i].num_tokens for i in in_step)
            progress["step"] += 1
            progress["tokens"] += tokens
            step = progress["step"]
            last_train = {"kind": "train", "step": step, "epoch": round(step_plan.epoch, 4),
                          "tokens": progress["tokens"], "lr": lr, "examples": len(in_step), **stats,
                          "tokens_per_s": tokens / elapsed, "step_time_s": elapsed,
                          "mfu": tokens / elapsed * flops_token / peak if peak else None}
            if step % config.log_every == 0 or step == len(steps):
                run.sink.write(last_train)
            bar.update(task, advance=1, description=f"{table} epoch {step_plan.epoch:.2f} loss "
                                                    f"{stats[objective.loss_key]:.4f} lr {lr:.2e}")
            if val_rows and (step % config.eval_every == 0 or step == len(steps)):
                val = run_validation(run, objective, batches(val_rows, shard=False))
                last_val = {"kind": "val", "step": step, "epoch": round(step_plan.epoch, 4),
                            "tokens": progress["tokens"], **val}
                run.sink.write(last_val)
            if step % config.checkpoint_every == 0 or step == len(steps):
                run.save(step, {"progress": dict(progress), "plan": fingerprint}, checkpoint)
    final = run.close()
    history = read_metrics(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else [last_train]
    losses = [r[objective.loss_key] for r in history if r.get("kind") == "train" and objective.loss_key in r]
    console.print(f"done: {progress['step']} steps; {objective.loss_key} {losses[-1] if losses else float('nan'):.4f}"
                  + (f", validation loss {last_val['val_loss']:.4f}" if last_val else "") + f"; checkpoint {final}")
    return PostTrainResult(out, final, progress["step"], losses, {"train": last_train, "val": last_val}, data)


@torch.no_grad()
def run_validation(run: TrainingRun, objective: Objective, batches) -> dict:
    was_training = run.forward.training
    run.forward.eval()
    with run.autocast:
        metrics = objective.validate(run.forward, batches)
    run.forward.train(was_training)
    return metrics


def _report_data(console: Console, data: dict, bad: list[dict], out: Path) -> None:
    console.print(f"records: {data['read']:,} read, {data['used']:,} used ({data['train_examples']:,} train / "
                  f"{data['val_examples']:,} validation), {data['bad']:,} skipped; rows "
                  f"{data['packing_efficiency']:.0%} full")
    if bad:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in data["bad_by_kind"].items())
        console.print(f"skipped records by reason: {kinds}; each one in {out / 'bad_records.jsonl'}, e.g.")
        for item in bad[:5]:
            console.print(f"  {item['where']}: {item['reason']}", soft_wrap=True)
