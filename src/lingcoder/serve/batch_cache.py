"""A KV cache whose rows join and leave between decode steps: the memory layout of continuous batching.

Rows are right-aligned: row i's tokens fill the `real` columns just before `length`, and the columns on
their left are padding hidden by `mask_BS`. Positions are counted over real tokens only (see
`default_position_ids`), and RoPE is applied before keys are stored, so a row's cached keys and values
do not depend on where it sits: a prefilled row can be copied in after any number of columns, and
columns no row uses any more can be dropped, without changing what any row computes.
"""

from __future__ import annotations

import torch

from lingcoder.model import KVCache
from lingcoder.model.config import BailingMoeConfig

HEADROOM = 64  # free columns allocated past `length`, so that most decode steps do not reallocate


class BatchKVCache(KVCache):
    """Starts with no rows; `add` appends prefilled rows, `keep` drops finished ones, `reserve` grows."""

    def __init__(self, config: BailingMoeConfig, device, dtype):
        super().__init__(config, 0, 0, device, dtype)
        self.mask_BS = torch.zeros(0, 0, dtype=torch.bool, device=device)

    @property
    def rows(self) -> int:
        return self.mask_BS.shape[0]

    def add(self, prefill: KVCache, prefill_mask_BS: torch.Tensor, repeats: torch.Tensor) -> None:
        """Append the rows of a left-padded prefill cache, row j `repeats[j]` times (n choices of one prompt)."""
        length = max(self.length, prefill.length)
        old, new = self.length, prefill.length
        mask_BS = torch.cat([
            _place(self.mask_BS[:, :old], length, length + HEADROOM),
            _place(prefill_mask_BS[:, :new].repeat_interleave(repeats, dim=0), length, length + HEADROOM),
        ])
        for store, added in ((self.keys, prefill.keys), (self.values, prefill.values)):
            for layer, (mine, theirs) in enumerate(zip(store, added, strict=True)):
                store[layer] = torch.cat([
                    _place(mine[:, :, :old], length, length + HEADROOM),
                    _place(theirs[:, :, :new].repeat_interleave(repeats, dim=0), length, length + HEADROOM),
                ])
        self.mask_BS, self.length, self.max_len = mask_BS, length, length + HEADROOM

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in that order) and drop the leading columns none of them uses."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask_BS.device)
        mask_BS = self.mask_BS.index_select(0, index)
        length = int(mask_BS[:, : self.length].sum(-1).max()) if rows else 0
        start = self.length - length
        self.mask_BS = _place(mask_BS[:, start : self.length], length, length + HEADROOM)
        for store in (self.keys, self.values):
            for layer, tensor in enumerate(store):
                store[layer] = _place(tensor.index_select(0, index)[:, :, start : self.length], length,
                                      length + HEADROOM)
        self.length, self.max_len = length, length + HEADROOM

    def reserve(self, tokens: int) -> None:
        """Make room for `tokens` more columns."""
        if self.length + tokens <= self.max_len:
            return
        capacity = max(self.length + tokens, 2 * self.max_len)
        self.mask_BS = _place(self.mask_BS[:, : self.length], self.length, capacity)
        for store in (self.keys, self.values):
            for layer, tensor in enumerate(store):
                store[layer] = _place(tensor[:, :, : self.length], self.length, capacity)
        self.max_len = capacity


def _place(x: torch.Tensor, end: int, capacity: int) -> torch.Tensor:
    """`x` (its last dim for a mask [B, S], its third for keys [B, G, S, Dh]) right-aligned to end at column
    `end` of a zeroed tensor with `capacity` columns."""
    dim = 1 if x.dim() == 2 else 2
    shape = list(x.shape)
    shape[dim] = capacity
    out = torch.zeros(shape, dtype=x.dtype, device=x.device)
    out.narrow(dim, end - x.shape[dim], x.shape[dim]).copy_(x)
    return out
