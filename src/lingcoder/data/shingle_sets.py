"""Each document's shingles, kept beside its MinHash signature, so a duplicate can be verified exactly.

MinHash LSH only proposes pairs, and datatrove's clustering joins every proposed pair into one
cluster: A~B and B~C put A and C together even when they share half their shingles (files
generated from one template, each a little further from the first). The dedup step therefore
checks each file it would drop against the copy it keeps, by the exact Jaccard similarity of
their shingle sets, which `ShingleSetWriter` stores while the MinHash signature step has them in
hand: per task, one flat file of 32-bit shingles (`NNNNN.shingles`, a document's word shingles
then its renaming-proof ones, in stream order) and an index of where each document's two views
start and end (`NNNNN.index.npy`). `ShingleSets` reads them back by (task, document index),
memory-mapped, so only the documents in duplicate groups are ever loaded.
"""

from __future__ import annotations

import os

import numpy as np

from lingcoder.errors import LingcoderError


class ShingleSetWriter:
    """Appends documents' shingles (in stream order) to one task's files; a context manager."""

    def __init__(self, folder: str, rank: int):
        self.folder, self.rank = folder, rank
        self._bounds: list[tuple[int, int, int, int]] = []
        self._written = 0
        self._file = None

    def __enter__(self) -> ShingleSetWriter:
        os.makedirs(self.folder, exist_ok=True)
        self._file = open(f"{self.folder}/{self.rank:05d}.shingles", "wb")
        return self

    def add(self, words: np.ndarray, renamed: np.ndarray | None) -> None:
        """The next document's word shingles and renaming-proof shingles (None: the same as its words)."""
        start = self._written
        self._write(words)
        if renamed is None or renamed is words:
            self._bounds.append((start, self._written, start, self._written))
        else:
            middle = self._written
            self._write(renamed)
            self._bounds.append((start, middle, middle, self._written))

    def _write(self, shingles: np.ndarray) -> None:
        values = shingles.astype(np.uint32, copy=False).ravel()  # shingles are 32-bit values
        values.tofile(self._file)
        self._written += values.size

    def __exit__(self, *exc_info) -> None:
        self._file.close()
        bounds = np.array(self._bounds, dtype=np.int64).reshape(-1, 4)
        np.save(f"{self.folder}/{self.rank:05d}.index.npy", bounds)


class ShingleSets:
    """The shingle sets `ShingleSetWriter` stored, by (task, document index)."""

    def __init__(self, folder: str):
        self.folder = folder
        self._tasks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _task(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        if rank not in self._tasks:
            index_file, data_file = f"{self.folder}/{rank:05d}.index.npy", f"{self.folder}/{rank:05d}.shingles"
            if not (os.path.exists(index_file) and os.path.exists(data_file)):
                raise LingcoderError(f"{self.folder}: no stored shingles for task {rank} (was its signature step run?)")
            size = os.path.getsize(data_file)
            data = np.memmap(data_file, dtype=np.uint32, mode="r") if size else np.empty(0, dtype=np.uint32)
            self._tasks[rank] = (np.load(index_file), data)
        return self._tasks[rank]

    def get(self, rank: int, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(word shingle set, renaming-proof shingle set) of one document, each sorted and unique."""
        bounds, data = self._task(rank)
        if not 0 <= idx < len(bounds):
            raise LingcoderError(f"{self.folder}: task {rank} stored {len(bounds)} documents, not document {idx}")
        word_start, word_end, renamed_start, renamed_end = bounds[idx]
        words = np.unique(data[word_start:word_end])
        if (renamed_start, renamed_end) == (word_start, word_end):
            return words, words
        return words, np.unique(data[renamed_start:renamed_end])


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique arrays (0 when both are empty: nothing to compare)."""
    shared = np.intersect1d(first, second, assume_unique=True).size
    union = first.size + second.size - shared
    return shared / union if union else 0.0
