"""`lingcoder sft`: supervised fine-tuning on chat records (Ling-Coder-SFT, docs/training.md), the loss
on the assistant's tokens only, conversations packed into rows, several epochs.

Records: Ling-Coder-SFT style `{"mid", "messages": [{"role": "HUMAN"|"ASSISTANT"|"SYSTEM", "content"}],
...}` or OpenAI style `{"messages": [{"role": "system"|"user"|"assistant", "content"}]}`; multi-turn
conversations train every assistant turn. The loss is the mean cross-entropy over the step's trained
tokens (all micro-batches and processes together).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch.nn.functional as F
from rich.console import Console

from lingcoder.train.chat import conversation
from lingcoder.train.packing import PackedBatch
from lingcoder.train.posttrain import PostTrainConfig, PostTrainResult, load_stage_config, run_posttraining
from lingcoder.train.records import Example
from lingcoder.train.schedules import ScheduleConfig


@dataclass
class SFTConfig(PostTrainConfig):
    """The `[sft]` table. Defaults follow the paper where it says (5 epochs, LR 4e-5 cosine, 100 warm-up steps)."""

    out: str = "runs/tiny/sft"
    epochs: int = 5
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig("cosine", 4e-5, 4e-6, warmup_steps=100))


def load_sft_config(path: str | Path, overrides: list[str] = ()) -> SFTConfig:
    return load_stage_config(SFTConfig, "sft", path, overrides)


class SFTObjective:
    loss_key = "lm_loss"

    def weight(self, example: Example) -> int:
        return int(example.sequences[0].trained.sum())

    def loss(self, forward, batch: PackedBatch, scale: float):
        out = forward(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids)
        total = masked_cross_entropy_sum(out.logits, batch.labels)
        return total * scale, {"lm_loss": total.item() * scale}, out

    def validate(self, forward, batches) -> dict:
        loss_sum = tokens = 0.0
        for batch in batches:
            logits = forward(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids).logits
            loss_sum += masked_cross_entropy_sum(logits, batch.labels).item()
            tokens += int((batch.labels != -100).sum())
        return {"val_loss": loss_sum / max(tokens, 1), "val_trained_tokens": int(tokens)}


def masked_cross_entropy_sum(logits_BTV, labels_BT):
    """Summed cross-entropy over the trained positions (labels != -100)."""
    return F.cross_entropy(logits_BTV.float().flatten(0, 1), labels_BT.flatten(), ignore_index=-100, reduction="sum")


def sft(config: SFTConfig, resume: bool = False, console: Console | None = None) -> PostTrainResult:
    """Fine-tune `config.init_from` on `config.data`; checkpoints and metrics under `config.out`."""
    return run_posttraining(config, "sft", lambda record: [conversation(record)],
                            lambda checkpoint, examples, batches, env, console: SFTObjective(), resume, console)
