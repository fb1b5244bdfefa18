"""Batches for training: packed windows drawn from a weighted mixture of token sources.

Each sequence of a global batch picks a source by the phase's mixture weights and a uniformly
random window of `seq_len + 1` tokens in it (documents packed back to back, as written by
`lingcoder tokenize`). All draws come from one seeded numpy generator whose state is saved in
checkpoints, so a resumed run sees exactly the batches an uninterrupted one would. Every process
makes the same draws and reads only its own slice, so the global batch does not depend on the
number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lingcoder.data.shards import TokenIndex, TokenStream
from lingcoder.errors import LingcoderError


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    targets: torch.Tensor  # [B, T], the next token of each position
    document_ids: torch.Tensor  # [B, T], packed documents never attend to each other
    position_ids: torch.Tensor  # [B, T], restarting at 0 in each document
    sources: list[str]


def window_batch(windows: np.ndarray, doc_ids: np.ndarray, sources: list[str]) -> Batch:
    """From [B, T+1] token windows and their document ids, the model's inputs and targets."""
    tokens = torch.from_numpy(windows)
    docs = torch.from_numpy(doc_ids[:, :-1] - doc_ids[:, :1])
    T = docs.shape[1]
    index = torch.arange(T).expand_as(docs)
    first_of_doc = torch.where(torch.cat([torch.ones_like(docs[:, :1], dtype=torch.bool),
                                          docs[:, 1:] != docs[:, :-1]], dim=1), index, 0)
    positions = index - first_of_doc.cummax(dim=1).values
    return Batch(tokens[:, :-1], tokens[:, 1:], docs, positions, sources)


class MixtureSampler:
    def __init__(self, index: TokenIndex, sources: list[str], seq_len: int, seed: int):
        self.seq_len = seq_len
        self.streams: dict[str, TokenStream] = {}
        for name in sources:
            if name not in index.sources:
                raise LingcoderError(f"mixture source {name!r} is not in {index.directory} "
                                     f"(available: {', '.join(index.sources)})")
            if index.num_tokens(name, "train") <= seq_len + 1:
                raise LingcoderError(f"mixture source {name!r} has {index.num_tokens(name, 'train')} training "
                                     f"tokens, fewer than one sequence of {seq_len + 1}")
            self.streams[name] = index.stream(name, "train")
        self.rng = np.random.default_rng(seed)

    def next_batch(self, mixture: dict[str, float], global_size: int, rank: int, local_size: int) -> Batch:
        """Draw `global_size` sequences; return this process's `local_size` of them."""
        names = sorted(mixture)
        weights = np.asarray([mixture[n] for n in names], dtype=np.float64)
        picks = self.rng.choice(len(names), size=global_size, p=weights / weights.sum())
        starts = [int(self.rng.integers(0, self.streams[names[p]].num_tokens - self.seq_len)) for p in picks]
        mine = range(rank * local_size, (rank + 1) * local_size)
        windows, doc_ids, sources = [], [], []
        for i in mine:
            stream = self.streams[names[picks[i]]]
            windows.append(stream.window(starts[i], self.seq_len + 1))
            doc_ids.append(stream.document_ids(starts[i], self.seq_len + 1))
            sources.append(names[picks[i]])
        return window_batch(np.stack(windows), np.stack(doc_ids), sources)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def validation_batches(index: TokenIndex, source: str, seq_len: int, max_tokens: int, batch_size: int):
    """Consecutive non-overlapping windows from the start of a source's validation split."""
    stream = index.stream(source, "val")
    count = min(max_tokens, stream.num_tokens - 1) // seq_len
    starts = [i * seq_len for i in range(count)]
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        windows = np.stack([stream.window(s, seq_len + 1) for s in chunk])
        doc_ids = np.stack([stream.document_ids(s, seq_len + 1) for s in chunk])
        yield window_batch(windows, doc_ids, [source] * len(chunk))
