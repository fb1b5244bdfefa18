"""Token shards: the on-disk format between `lingcoder tokenize` and training.

We keep our own format because it is three plain files and a reader needs nothing but numpy
(datatrove's tokenized format would also do; ours adds the train/val split and FIM metadata):

    TOKENS/index.json                   what is where (written last: its presence means complete)
    TOKENS/<source>/<split>/<rank>.bin  token ids, little-endian `dtype` (uint16 if the vocabulary
                                        fits, else uint32), documents back to back
    TOKENS/<source>/<split>/<rank>.docs.npy   int64 offsets: document i is bin[docs[i]:docs[i+1]]

Every document starts with the end-of-text token, which so also serves as its beginning-of-text:
a packed window never predicts a document's first token from the previous document.
`split` is `train` or `val`; `source` names a mixture source (e.g. `file-high`, `repo`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lingcoder.errors import LingcoderError

FORMAT = "lingcoder-tokens/1"
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends documents (lists of token ids) to one `<rank>.bin` + `<rank>.docs.npy` pair."""

    def __init__(self, directory: Path, rank: int, dtype: np.dtype):
        directory.mkdir(parents=True, exist_ok=True)
        self.bin_path = directory / f"{rank:05d}.bin"
        self.docs_path = directory / f"{rank:05d}.docs.npy"
        self.dtype = dtype
        self.file = open(self.bin_path, "wb")  # noqa: SIM115 (closed in close())
        self.offsets = [0]

    def add(self, ids: list[int]) -> None:
        self.file.write(np.asarray(ids, dtype=self.dtype).tobytes())
        self.offsets.append(self.offsets[-1] + len(ids))

    def close(self) -> None:
        self.file.close()
        np.save(self.docs_path, np.asarray(self.offsets, dtype=np.int64))


@dataclass
class TokenStream:
    """All shards of one (source, split), concatenated in shard order, memory-mapped."""

    tokens: list[np.memmap]
    doc_starts: np.ndarray  # global start offset of every document
    shard_starts: np.ndarray  # global start offset of every shard (+ the total at the end)

    @property
    def num_tokens(self) -> int:
        return int(self.shard_starts[-1])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) across shard boundaries."""
        out, pos = [], start
        while pos < start + length:
            shard = int(np.searchsorted(self.shard_starts, pos, side="right") - 1)
            local = pos - int(self.shard_starts[shard])
            take = min(start + length - pos, len(self.tokens[shard]) - local)
            out.append(np.asarray(self.tokens[shard][local : local + take]))
            pos += take
        return np.concatenate(out).astype(np.int64)

    def document_ids(self, start: int, length: int) -> np.ndarray:
        """For each position of a window, the index of the document it belongs to."""
        return np.searchsorted(self.doc_starts, np.arange(start, start + length), side="right") - 1


class TokenIndex:
    """`index.json` of a tokens directory, with readers for its streams."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        path = self.directory / "index.json"
        if not path.is_file():
            raise LingcoderError(f"{directory}: no index.json (not a tokens directory, or tokenize did not finish)")
        self.data = json.loads(path.read_text())
        if self.data.get("format") != FORMAT:
            raise LingcoderError(f"{path}: format {self.data.get('format')!r}, expected {FORMAT!r}")
        self.dtype = np.dtype(self.data["dtype"])
        self.vocab_size = int(self.data["vocab_size"])
        self.eos_token_id = int(self.data["eos_token_id"])

    @property
    def sources(self) -> list[str]:
        return sorted(self.data["sources"])

    def num_tokens(self, source: str, split: str) -> int:
        return int(self._entry(source, split)["tokens"])

    def stream(self, source: str, split: str) -> TokenStream:
        entry = self._entry(source, split)
        tokens, doc_starts, shard_starts = [], [], [0]
        for name in entry["shards"]:
            bin_path = self.directory / name
            docs_path = bin_path.with_suffix(".docs.npy")
            for needed in (bin_path, docs_path):
                if not needed.is_file():
                    raise LingcoderError(f"{self.directory}: shard file {needed.name} listed in index.json is missing")
            count = bin_path.stat().st_size // self.dtype.itemsize
            if count == 0:
                continue
            tokens.append(np.memmap(bin_path, dtype=self.dtype, mode="r"))
            doc_starts.append(np.load(docs_path)[:-1] + shard_starts[-1])
            shard_starts.append(shard_starts[-1] + count)
        if not tokens:
            raise LingcoderError(f"{self.directory}: source {source!r} has no {split} tokens")
        return TokenStream(tokens, np.concatenate(doc_starts), np.asarray(shard_starts, dtype=np.int64))

    def _entry(self, source: str, split: str) -> dict:
        if source not in self.data["sources"]:
            raise LingcoderError(
                f"{self.directory}: no source {source!r} (available: {', '.join(self.sources) or 'none'})"
            )
        return self.data["sources"][source][split]


def write_index(directory: Path, *, vocab_size: int, eos_token_id: int, settings: dict) -> dict:
    """Scan the shards under `directory` and write `index.json` (last, so it marks completion)."""
    sources: dict[str, dict] = {}
    dtype = token_dtype(vocab_size)
    for source_dir in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entry = {}
        for split in SPLITS:
            shards = sorted((source_dir / split).glob("*.bin"))
            tokens = sum(p.stat().st_size // dtype.itemsize for p in shards)
            documents = sum(len(np.load(p.with_suffix(".docs.npy"))) - 1 for p in shards)
            entry[split] = {"shards": [str(p.relative_to(directory)) for p in shards],
                            "tokens": int(tokens), "documents": int(documents)}
        sources[source_dir.name] = entry
    index = {"format": FORMAT, "dtype": dtype.name, "vocab_size": vocab_size, "eos_token_id": eos_token_id,
             **settings, "sources": sources}
    (directory / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index
