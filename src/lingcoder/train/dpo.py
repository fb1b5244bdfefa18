"""`lingcoder dpo`: direct preference optimisation (Ling-Coder-DPO, docs/training.md), sigmoid loss.

Records: `{"mid", "prompt", "chosen", "rejected"}`. The prompt is the human turn and each answer the
assistant turn of the chat template; a sequence's log-probability is the sum over its answer tokens and
end-of-turn token only. The policy starts from `init_from`; the frozen reference is that same checkpoint,
either run next to the policy on every batch (`reference = "on_the_fly"`) or run once over all pairs
before training (`"precomputed"`), its log-probabilities stored in `OUT/reference_logprobs.json` (keyed
by mid + content hash, reused on resume after a check against the reference model).

    loss = -log sigmoid(beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)))

Metrics per step: the loss, the rewards beta * (pi - ref) of chosen and rejected answers, their margin,
and the reward accuracy (share of pairs whose chosen reward is higher).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console

from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeForCausalLM
from lingcoder.train.chat import ChatRenderer, preference_pair
from lingcoder.train.distributed import DistEnv, shard_model
from lingcoder.train.packing import PackedBatch, pack
from lingcoder.train.posttrain import PostTrainConfig, PostTrainResult, load_stage_config, run_posttraining
from lingcoder.train.records import Example
from lingcoder.train.schedules import ScheduleConfig
from lingcoder.train.trainer import autocast_context

REFERENCE_FILE = "reference_logprobs.json"
SPOT_CHECK_TOLERANCE = 1e-3  # relative; a different reference model is off by far more


@dataclass
class DPOConfig(PostTrainConfig):
    """The `[dpo]` table. Defaults follow the paper where it says (2 epochs, LR 3e-7, 150 warm-up steps)."""

    out: str = "runs/tiny/dpo"
    epochs: int = 2
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig("cosine", 3e-7, 3e-8, warmup_steps=150))
    beta: float = 0.1
    reference: Literal["on_the_fly", "precomputed"] = "precomputed"


def load_dpo_config(path: str | Path, overrides: list[str] = ()) -> DPOConfig:
    return load_stage_config(DPOConfig, "dpo", path, overrides)


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float):
    """Per-pair sigmoid DPO loss and the (detached) rewards of the chosen and rejected answers."""
    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def sequence_logprobs(logits_BTV, batch: PackedBatch, sequences_per_example: int = 2):
    """Summed log-probability of each sequence's trained tokens: [examples x sequences_per_example]."""
    token_logp = -F.cross_entropy(logits_BTV.float().flatten(0, 1), batch.labels.flatten(), ignore_index=-100,
                                  reduction="none")
    sequence_ids = batch.sequence_ids.flatten()
    trained = sequence_ids >= 0
    sums = torch.zeros(len(batch.examples) * sequences_per_example, device=logits_BTV.device)
    return sums.index_add(0, sequence_ids[trained], token_logp[trained])


def forward_logits(model, batch: PackedBatch):
    return model(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids)


class DPOObjective:
    loss_key = "dpo_loss"

    def __init__(self, beta: float, reference):
        self.beta = beta
        self.reference = reference  # batch -> reference log-probs [2 x examples]: chosen, rejected, ...

    def weight(self, example: Example) -> int:
        return 1

    def pair_metrics(self, logits_BTV, batch: PackedBatch):
        policy = sequence_logprobs(logits_BTV, batch)
        reference = self.reference(batch)
        losses, chosen, rejected = dpo_loss(policy[0::2], policy[1::2], reference[0::2], reference[1::2], self.beta)
        sums = {"dpo_loss": losses.sum().item(), "reward_accuracy": (chosen > rejected).float().sum().item(),
                "margin": (chosen - rejected).sum().item(), "chosen_reward": chosen.sum().item(),
                "rejected_reward": rejected.sum().item()}
        return losses, sums

    def loss(self, forward, batch: PackedBatch, scale: float):
        out = forward_logits(forward, batch)
        losses, sums = self.pair_metrics(out.logits, batch)
        return losses.sum() * scale, {k: v * scale for k, v in sums.items()}, out

    def validate(self, forward, batches) -> dict:
        totals: dict[str, float] = {}
        pairs = 0
        for batch in batches:
            _, sums = self.pair_metrics(forward_logits(forward, batch).logits, batch)
            pairs += len(batch.examples)
            for key, value in sums.items():
                totals[key] = totals.get(key, 0.0) + value
        means = {f"val_{k}": v / max(pairs, 1) for k, v in totals.items()}
        return {"val_loss": means.pop("val_dpo_loss"), **means, "val_pairs": pairs}


class OnTheFlyReference:
    """The frozen reference model run on each batch."""

    def __init__(self, model: BailingMoeForCausalLM, autocast):
        self.model = model
        self.autocast = autocast

    @torch.no_grad()
    def __call__(self, batch: PackedBatch):
        with self.autocast:
            return sequence_logprobs(forward_logits(self.model, batch).logits, batch)


class StoredReference:
    """Reference log-probs computed once, looked up by example key."""

    def __init__(self, logprobs: dict[str, list[float]], examples: list[Example], device: torch.device):
        self.logprobs = logprobs
        self.examples = examples
        self.device = device

    def __call__(self, batch: PackedBatch):
        values = [v for i in batch.examples for v in self.logprobs[self.examples[i].key]]
        return torch.tensor(values, dtype=torch.float32, device=self.device)


def load_reference(checkpoint: Path, env: DistEnv) -> BailingMoeForCausalLM:
    """A frozen copy of the starting checkpoint (FSDP2-sharded like the policy under torchrun)."""
    model = BailingMoeForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).to(env.device).eval()
    model.requires_grad_(False)
    if env.world_size > 1:
        shard_model(model)
    return model


def precomputed_reference(config: DPOConfig, checkpoint: Path, examples: list[Example], batches, env: DistEnv,
                          console: Console) -> StoredReference:
    """Reference log-probs of every example, from OUT/reference_logprobs.json when it holds them for this
    reference and tokenization (spot-checked against the model), else computed and stored."""
    path = Path(config.out) / REFERENCE_FILE
    model = load_reference(checkpoint, env)
    reference = OnTheFlyReference(model, autocast_context(config.precision, env.device))
    header = {"reference": str(checkpoint.resolve()),
              "tokens": ChatRenderer.from_checkpoint(checkpoint).fingerprint}
    stored: dict[str, list[float]] = {}
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            stored = saved["logprobs"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise LingcoderError(f"{path}: unreadable stored reference log-probs ({exc}); delete it to "
                                 "recompute") from None
        if {k: saved.get(k) for k in header} != header:
            raise LingcoderError(f"{path} was computed for another reference or tokenization ({saved.get('reference')}"
                                 f"); delete it to recompute for {checkpoint}")
    lengths = [e.num_tokens for e in examples]
    needed = [i for i, e in enumerate(examples) if e.key not in stored]
    if stored:
        _spot_check(path, stored, examples, lengths, reference, batches, config)
        console.print(f"reference log-probs: {len(examples) - len(needed):,} of {len(examples):,} pairs from {path}")
    if needed:
        computed = {}
        for batch in batches(pack(lengths, needed, config.seq_len + 1)):
            values = reference(batch).tolist()
            for j, i in enumerate(batch.examples):
                computed[examples[i].key] = values[2 * j : 2 * j + 2]
        if dist.is_initialized():
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, computed)
            computed = {k: v for part in gathered for k, v in part.items()}
        stored.update(computed)
        if env.is_main:
            tmp = path.with_suffix(".tmp")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({**header, "logprobs": stored}))
            os.replace(tmp, path)
        console.print(f"reference log-probs: computed for {len(needed):,} pairs -> {path}")
    return StoredReference(stored, examples, env.device)


def _spot_check(path, stored, examples, lengths, reference, batches, config) -> None:
    """Recompute the stored log-probs of one micro-batch; a different reference model fails this."""
    known = [i for i, e in enumerate(examples) if e.key in stored]
    rows = pack(lengths, known, config.seq_len + 1)[: config.micro_batch_size]
    batch = next(batches(rows))
    if not batch.examples:  # this process's share of the rows is empty
        reference(batch)  # still run it: sharded processes compute together
        return
    fresh = reference(batch)
    saved = torch.tensor([v for i in batch.examples for v in stored[examples[i].key]], device=fresh.device)
    if not torch.allclose(fresh, saved, rtol=SPOT_CHECK_TOLERANCE, atol=SPOT_CHECK_TOLERANCE):
        worst = float((fresh - saved).abs().max())
        raise LingcoderError(f"{path}: the stored reference log-probs differ from {config.init_from}'s by up to "
                             f"{worst:.4g}: the reference changed; delete the file to recompute")


def dpo(config: DPOConfig, resume: bool = False, console: Console | None = None) -> PostTrainResult:
    """Preference-tune `config.init_from` on `config.data`; checkpoints and metrics under `config.out`."""
    if config.beta <= 0:
        raise LingcoderError(f"dpo.beta must be > 0, got {config.beta}")

    def make_objective(checkpoint, examples, batches, env, run_console):
        if config.reference == "precomputed":
            reference = precomputed_reference(config, checkpoint, examples, batches, env, run_console)
        else:
            reference = OnTheFlyReference(load_reference(checkpoint, env), autocast_context(config.precision,
                                                                                            env.device))
        return DPOObjective(config.beta, reference)

    return run_posttraining(config, "dpo", lambda record: list(preference_pair(record)), make_objective, resume,
                            console, frozen_models=1)
