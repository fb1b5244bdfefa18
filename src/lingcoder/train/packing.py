"""Packing tokenized examples into fixed-length rows, the epoch plan, and the validation split.

A row holds `seq_len + 1` tokens (inputs are its first `seq_len`, targets its last `seq_len`, as in
pretraining) and as many whole examples as fit, found first-fit among the most recent open rows after a
seeded shuffle of each epoch. Every sequence of an example (DPO: the chosen and the rejected answer) is
a document of its own: positions restart at 0 and attention never crosses documents, so a packed
sequence computes exactly what it would alone. The plan of every step is a pure function of the
examples and the config, so a resumed run replays the batches of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch

from lingcoder.train.data import window_batch
from lingcoder.train.records import Example

OPEN_ROWS = 64  # rows still open to first-fit; bounds packing time at O(examples x OPEN_ROWS)


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T]: the next token where it is trained, else -100
    document_ids: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    sequence_ids: torch.Tensor  # [B, T]: which sequence of the batch a trained label belongs to, else -1
    examples: list[int]  # the batch's examples; example j owns sequences j * n ... j * n + n - 1

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(self.input_ids.to(device), self.labels.to(device), self.document_ids.to(device),
                           self.position_ids.to(device), self.sequence_ids.to(device), self.examples)


@dataclass
class Step:
    epoch: float  # epochs done when this step ends (e.g. 1.5 = half way through the second)
    rows: list[list[int]]  # the global batch: example indices per row, [] for a padding row


def pack(lengths: list[int], order, capacity: int) -> list[list[int]]:
    """Example indices per row, taken in `order`; each goes to the first of the last OPEN_ROWS rows with room."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        i = int(i)
        first = max(0, len(rows) - OPEN_ROWS)
        slot = next((r for r in range(first, len(rows)) if room[r] >= lengths[i]), None)
        if slot is None:
            rows.append([])
            room.append(capacity)
            slot = len(rows) - 1
        rows[slot].append(i)
        room[slot] -= lengths[i]
    return rows


def plan_steps(examples: list[Example], train: list[int], capacity: int, epochs: int, seed: int,
               rows_per_step: int) -> list[Step]:
    """Every step of the run: per epoch, a seeded shuffle of `train`, packed, cut into global batches of
    `rows_per_step` rows (the last one padded with empty rows, so that no example is dropped)."""
    lengths = [e.num_tokens for e in examples]
    steps: list[Step] = []
    for epoch in range(epochs):
        order = np.asarray(train)[np.random.default_rng([seed, epoch]).permutation(len(train))]
        rows = pack(lengths, order, capacity)
        rows += [[] for _ in range(-len(rows) % rows_per_step)]
        count = len(rows) // rows_per_step
        steps += [Step(epoch + (i + 1) / count, rows[i * rows_per_step : (i + 1) * rows_per_step])
                  for i in range(count)]
    return steps


def plan_fingerprint(examples: list[Example], steps: list[Step], capacity: int) -> str:
    """Identifies the run's batches: a resumed run must replay exactly these."""
    digest = hashlib.sha256(json.dumps([capacity, [[[examples[i].key for i in row] for row in step.rows]
                                                   for step in steps]]).encode())
    return digest.hexdigest()[:16]


def rank_rows(rows: list[list[int]], micro_step: int, micro_batch_size: int, rank: int, world_size: int):
    """This process's rows of one micro-step of a global batch (the same layout as pretraining)."""
    start = (micro_step * world_size + rank) * micro_batch_size
    return rows[start : start + micro_batch_size]


def packed_batch(examples: list[Example], rows: list[list[int]], capacity: int, pad_id: int) -> PackedBatch:
    """Tensors of `rows` of `capacity` tokens; padding is a document of its own with no loss."""
    tokens = np.full((len(rows), capacity), pad_id, dtype=np.int64)
    trained = np.zeros((len(rows), capacity), dtype=bool)
    sequence = np.full((len(rows), capacity), -1, dtype=np.int64)
    documents = np.zeros((len(rows), capacity), dtype=np.int64)
    order: list[int] = []
    next_sequence = 0
    for b, row in enumerate(rows):
        at = document = 0
        for i in row:
            for seq in examples[i].sequences:
                end = at + len(seq)
                tokens[b, at:end], trained[b, at:end] = seq.ids, seq.trained
                sequence[b, at:end], documents[b, at:end] = next_sequence, document
                at, document, next_sequence = end, document + 1, next_sequence + 1
            order.append(i)
        documents[b, at:] = document
    base = window_batch(tokens, documents, [])
    labels = torch.from_numpy(np.where(trained[:, 1:], tokens[:, 1:], -100))
    sequence_ids = torch.from_numpy(np.where(trained[:, 1:], sequence[:, 1:], -1))
    return PackedBatch(base.input_ids, labels, base.document_ids, base.position_ids, sequence_ids, order)


def split_validation(examples: list[Example], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) example indices: an example is held out when a hash of its key falls under
    `fraction`, so the split does not depend on file order and duplicates stay on one side."""
    train, val = [], []
    for i, example in enumerate(examples):
        draw = int.from_bytes(hashlib.sha256(f"{seed}:{example.key}".encode()).digest()[:8], "big") / 2**64
        (val if draw < fraction else train).append(i)
    return train, val
