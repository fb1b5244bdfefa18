"""A KV cache whose rows join and leave between decode steps: the memory layout of continuous batching.

Storage is preallocated, [row slots, G, columns, Dh] per layer, and grows by doubling (rarely: it is
reused for the life of the batch). Running rows occupy slots 0..rows-1 and are right-aligned: row i's
tokens fill the columns just before `end`, where every row's next token goes, and the columns on their
left are padding hidden by the mask. Positions are counted over real tokens only (see
`default_position_ids`), and RoPE is applied before keys are stored, so a row's cached keys and values
do not depend on where it sits. Hence:

- a decode step writes one column (a slice, no copy of the cache) and attends over a window
  `[start, end]` whose width is rounded up to `WINDOW_ALIGN` columns, so the shapes the kernels see
  change once every `WINDOW_ALIGN` steps, not at every step;
- a joining row copies only its own prefilled keys and values into a free slot;
- a leaving row is overwritten by the rows after it (a copy of those rows' windows only);
- when `end` reaches the last column, every row is shifted left at once (amortised over many steps).
"""

from __future__ import annotations

import torch

from lingcoder.model import KVCache
from lingcoder.model.config import BailingMoeConfig

WINDOW_ALIGN = 64  # attention window widths are multiples of this (and the left margin kept free for it)
INITIAL_COLUMNS = 256


class BatchKVCache(KVCache):
    """Starts with no rows; `add` appends prefilled rows, `keep` drops finished ones, `begin_step` opens
    the next decode step's column. To the model it is a `KVCache` over the current window."""

    def __init__(self, config: BailingMoeConfig, device, dtype, max_rows: int = 8):
        self.layers, self.device, self.dtype = config.num_hidden_layers, device, dtype
        self.kv_shape = (config.num_key_value_heads, config.head_dim)
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths: list[int] = []  # real tokens cached per running row
        self.start = self.end = WINDOW_ALIGN
        self._allocate(max(max_rows, 1), INITIAL_COLUMNS)

    # -- the `KVCache` interface the model uses: a cache over columns [start, end) ---------------------
    @property
    def length(self) -> int:
        return self.end - self.start

    @length.setter
    def length(self, value: int) -> None:  # the model advances it after a forward
        self.end = self.start + value

    @property
    def max_len(self) -> int:
        return self.columns - self.start

    def store(self, layer: int, k_BGTDh: torch.Tensor, v_BGTDh: torch.Tensor):
        B, T = k_BGTDh.shape[0], k_BGTDh.shape[2]
        if self.end + T > self.columns:
            raise ValueError(f"KV cache overflow: column {self.end + T} > {self.columns}")
        keys, values = self.keys[layer][:B], self.values[layer][:B]
        keys[:, :, self.end : self.end + T] = k_BGTDh
        values[:, :, self.end : self.end + T] = v_BGTDh
        return keys[:, :, self.start : self.end + T], values[:, :, self.start : self.end + T]

    # -- rows joining, leaving, stepping ----------------------------------------------------------------
    @property
    def rows(self) -> int:
        return len(self.lengths)

    def add(self, prefill: KVCache, prefill_mask_BS: torch.Tensor, repeats: list[int]) -> None:
        """Append the rows of a left-padded prefill cache, row j `repeats[j]` times (n choices of one prompt)."""
        real = prefill_mask_BS[:, : prefill.length].sum(-1).tolist()
        total = self.rows + sum(repeats)
        needed = max([*self.lengths, *real])
        columns = _round_up(needed, WINDOW_ALIGN) + WINDOW_ALIGN + 1  # the shifted end below, and its step
        if total > self.slots or columns > self.columns:
            self._allocate(max(total, 2 * self.slots) if total > self.slots else self.slots,
                           max(self.columns, 2 * columns) if columns > self.columns else self.columns)
        if needed + WINDOW_ALIGN > self.end:  # not enough free columns on the left: shift everyone right
            self._shift_to(_round_up(needed, WINDOW_ALIGN) + WINDOW_ALIGN)
        slot, lengths = self.rows, []
        for j, (length, copies) in enumerate(zip(real, repeats, strict=True)):
            for _ in range(copies):
                self.mask[slot].zero_()
                self.mask[slot, self.end - length : self.end] = True
                for store, added in ((self.keys, prefill.keys), (self.values, prefill.values)):
                    for layer in range(self.layers):
                        store[layer][slot, :, self.end - length : self.end] = \
                            added[layer][j, :, prefill.length - length : prefill.length]
                lengths.append(length)
                slot += 1
        self.lengths += lengths  # only now: a failed copy leaves the running rows as they were

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (ascending), moved down to slots 0..len(rows)-1."""
        moved = [(slot, row) for slot, row in enumerate(rows) if slot != row]
        if moved:
            low = moved[0][0]
            index = torch.tensor(rows[low:], device=self.device)
            window = slice(self.end - max(self.lengths[row] for _, row in moved), self.end)
            for store in (self.keys, self.values):
                for tensor in store:
                    tensor[low : len(rows), :, window] = tensor[index, :, window]
            self.mask[low : len(rows)] = self.mask[index]
        self.lengths = [self.lengths[row] for row in rows]

    def begin_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Open the column of the next token of every row: (mask [B, window], position ids [B, 1]).

        The window ends at the new column and is `WINDOW_ALIGN`-aligned in width."""
        if self.end + 1 > self.columns:
            longest = max(self.lengths)
            if _round_up(longest + 1, WINDOW_ALIGN) + WINDOW_ALIGN + 1 > self.columns:
                self._allocate(self.slots, 2 * self.columns)
            self._shift_to(_round_up(longest, WINDOW_ALIGN) + WINDOW_ALIGN)
        B = self.rows
        self.mask[:B, self.end] = True
        self.start = self.end + 1 - _round_up(max(self.lengths) + 1, WINDOW_ALIGN)
        positions_B1 = torch.tensor(self.lengths, device=self.device)[:, None]
        return self.mask[:B, self.start : self.end + 1], positions_B1

    def end_step(self) -> None:
        """The model advanced `end` past the new column; every row is one token longer."""
        self.lengths = [length + 1 for length in self.lengths]

    # -- storage ------------------------------------------------------------------------------------------
    def _allocate(self, slots: int, columns: int) -> None:
        """(Re)allocate storage, keeping the running rows where they are."""
        G, Dh = self.kv_shape
        old = (self.keys, self.values, getattr(self, "mask", None))
        self.keys = [torch.zeros(slots, G, columns, Dh, device=self.device, dtype=self.dtype)
                     for _ in range(self.layers)]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.mask = torch.zeros(slots, columns, dtype=torch.bool, device=self.device)
        B, used = self.rows, getattr(self, "columns", 0)
        if B:
            for new, previous in ((self.keys, old[0]), (self.values, old[1])):
                for layer in range(self.layers):
                    new[layer][:B, :, :used] = previous[layer][:B]
            self.mask[:B, :used] = old[2][:B]
        self.slots, self.columns = slots, columns

    def _shift_to(self, end: int) -> None:
        """Move every running row so that its tokens end just before column `end`."""
        B, longest = self.rows, max(self.lengths, default=0)
        if B and longest:
            source, target = slice(self.end - longest, self.end), slice(end - longest, end)
            for store in (self.keys, self.values):
                for tensor in store:
                    tensor[:B, :, target] = tensor[:B, :, source].clone()
            mask = self.mask[:B, source].clone()
            self.mask[:B] = False
            self.mask[:B, target] = mask
        self.start = self.end = end


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
