"""Step 4: exact, near and renamed-copy deduplication, keeping the best copy.

Near duplicates are found by datatrove's MinHash stages (signature -> LSH buckets -> clusters)
over 5-gram shingles of `[A-Za-z_0-9]+` tokens (The Stack's setting). The LSH bands
(`DedupConfig.bands` x `rows` = 8 x 6) put the similarity at which a pair is found with
probability 1/2 at (1/8)^(1/6) = 0.71, The Stack's Jaccard 0.7. Exact duplicates share the
SHA-1 of their normalised content (lines stripped, blank lines removed).

Renamed copies (type-2 clones: identifiers consistently renamed, maybe reformatted) share few
word shingles, so each document gets a second set of 5-gram shingles over its renaming-proof
token stream (clones.py), with its own `renamed_bands` (3) bands of the same 6 rows.
`CodeMinhashSignature` writes both as one datatrove signature of 11 buckets (words in buckets
0-7, renaming-proof tokens in 8-10), so datatrove's bucket and cluster stages find pairs similar
under either view. That view is stricter, (1/3)^(1/6) = 0.83: a renamed and reformatted copy
scores 0.95-1 there, while files that share a template (test boilerplate, generated tables) sit
around 0.5. A file uses its word shingles in both views when it has fewer than
`renamed_min_tokens` code tokens (two short files of the same shape are no evidence of copying)
or when under `renamed_min_identifier_share` of its tokens are names (tables and data: nothing to
rename, and their literals are already in the word view). `renamed_copies = false` keeps only
the word view.

datatrove's own filter keeps an arbitrary member of each cluster; the paper keeps the copy from
the repository with most stars, then the best quality score. So the clusters datatrove writes
(`save_cluster_id`) and the exact-hash groups are merged here (a small union-find), and each
group's members are taken best first (stars, score, then repo and path for determinism): the
first is kept, and each next one is dropped as a copy of the first kept member it matches, by
exact content hash or by an exact Jaccard similarity of at least `min_similarity` (0.7) under
either view, computed from the shingle sets the signature step stored (shingle_sets.py). A member
that matches no kept one is kept too: MinHash clusters chain (A~B, B~C) and LSH proposes pairs
below the threshold, so a cluster alone is no proof that two of its files are copies.
`min_similarity = 0` drops every member but the first, as datatrove's filter does. The losers
are dropped by `DuplicateFilter` with reason `exact_duplicate` or `near_duplicate` and the kept
copy in `detail`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import TextNormConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from lingcoder.data.clones import CODE_WORD, cached_word_shingles, clone_token_hashes, shingles
from lingcoder.data.shingle_sets import ShingleSets, ShingleSetWriter, jaccard
from lingcoder.data.steps import CurationFilter
from lingcoder.errors import LingcoderError

SHIFT = np.uint64(32)
KEY_SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),
        ("id", pa.string()),
        ("repo", pa.string()),
        ("path", pa.string()),
        ("stars", pa.int64()),
        ("score", pa.float64()),
        ("exact_hash", pa.string()),
    ]
)
DUPLICATE_SCHEMA = pa.schema(
    [
        ("rank", pa.int64()),
        ("idx", pa.int64()),
        ("id", pa.string()),
        ("kept_id", pa.string()),
        ("kept_repo", pa.string()),
        ("kept_path", pa.string()),
        ("kind", pa.string()),
    ]
)


class CodeWordTokenizer(WordTokenizer):
    """Identifier/number tokens, the unit of the 5-gram shingles (no spaCy, any language)."""

    def __init__(self):
        super().__init__("code")

    def word_tokenize(self, text: str) -> list[str]:
        return CODE_WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


@dataclass
class DedupConfig:
    """MinHash banding per view, whether renamed copies (type-2 clones) are looked for, and how similar
    a dropped copy must be to the kept one."""

    n_grams: int = 5
    bands: int = 8
    rows: int = 6  # hashes per band: a pair is found with probability 1/2 at Jaccard (1/bands)^(1/rows)
    renamed_copies: bool = True
    renamed_bands: int = 3  # bands of the renaming-proof view: threshold (1/3)^(1/6) = 0.83
    renamed_min_tokens: int = 100  # shorter files are compared by their words only ...
    renamed_min_identifier_share: float = 0.2  # ... and so are files with fewer names per token
    min_similarity: float = 0.7  # exact Jaccard to a kept copy, either view, for a cluster member to be dropped

    def __post_init__(self) -> None:
        if not 0 <= self.min_similarity <= 1:
            raise LingcoderError(f"dedup.min_similarity must be in [0, 1], got {self.min_similarity}")


def minhash_config(config: DedupConfig | None = None) -> MinhashConfig:
    config = config or DedupConfig()
    # 32-bit hashes: datatrove 0.10.1's bucket stage rejects its own 64-bit signatures as corrupted.
    # Text normalisation (for datatrove's own get_shingles; CodeMinhashSignature lower-cases its words
    # itself): only lower-casing; the [A-Za-z_0-9]+ tokenizer already ignores whitespace and
    # punctuation, and datatrove's per-character diacritics pass would be the slowest part of the step.
    norm = TextNormConfig(norm_whitespace=False, remove_punctuation=False, norm_unicode_diacritics=False,
                          norm_numbers=False)
    buckets = config.bands + (config.renamed_bands if config.renamed_copies else 0)
    return MinhashConfig(n_grams=config.n_grams, num_buckets=buckets, hashes_per_bucket=config.rows,
                         hash_config=HashConfig(precision=32), norm_config=norm)


class CodeMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signature step over code: word shingles, plus renaming-proof shingles.

    Shingles are hashed with numpy (`clones.shingles`) rather than one Python call per n-gram, and
    the word shingles are the ones the repetition rule already made. The permutations are
    multiply-add-shift hashes, `((a * x + b) mod 2**64) >> 32` for 32-bit shingles `x` and odd `a`
    (2-universal, as datatrove's `(a * x + b) mod p` but without a 64-bit modulo), from
    datatrove's seeded parameters.
    With `renamed_copies`, the signature's first `bands` buckets come from the word shingles and
    the last `renamed_bands` from `clone_token_hashes` shingles (or again from the word shingles,
    for a file too short or with too few names, see the module docstring). datatrove's `run` hands
    `get_shingles` only the text, so `run` notes each document's language as it passes, and
    `get_shingles` leaves the second view for `get_signature`, which datatrove calls next for the
    same document. Both views of every document also go to `shingles_folder` (`ShingleSetWriter`),
    where `DuplicateResolver` reads them to verify the pairs MinHash proposed.
    """

    def __init__(self, output_folder: str, shingles_folder: str, config: DedupConfig | None = None):
        self.dedup = config or DedupConfig()
        super().__init__(output_folder, config=minhash_config(self.dedup), language=CodeWordTokenizer())
        self.shingles_folder = shingles_folder
        self._doc = None
        self._clone_shingles: np.ndarray | None = None
        self._stored: ShingleSetWriter | None = None

    def run(self, data, rank: int = 0, world_size: int = 1):
        def noting(docs):
            for doc in docs:
                self._doc = doc
                yield doc

        with ShingleSetWriter(self.shingles_folder, rank) as self._stored:
            super().run(noting(data), rank, world_size)

    def get_shingles(self, text: str) -> np.ndarray:
        word_shingles = cached_word_shingles(self._doc, self.dedup.n_grams)
        if self.dedup.renamed_copies:
            tokens, names = clone_token_hashes(text, self._doc.metadata.get("language"))
            usable = (
                len(tokens) >= max(self.dedup.renamed_min_tokens, self.dedup.n_grams)
                and names >= self.dedup.renamed_min_identifier_share * len(tokens)
            )
            self._clone_shingles = shingles(tokens, self.dedup.n_grams) if usable else word_shingles
        self._stored.add(word_shingles, self._clone_shingles if self.dedup.renamed_copies else None)
        return word_shingles

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        a, b = self.parameters
        a = a | np.uint64(1)
        split = self.dedup.bands * self.dedup.rows
        views = [(shingles, slice(0, split))]
        if self.dedup.renamed_copies:
            views.append((self._clone_shingles, slice(split, None)))
        view_minima = []
        with np.errstate(over="ignore"):
            for view, columns in views:
                view_minima.append(np.min((view * a[:, columns] + b[:, columns]) >> SHIFT, axis=0))
        minima = np.concatenate(view_minima).astype(self.config.hash_config.np_dtype)
        return [bucket.tolist() for bucket in np.split(minima, self.config.num_buckets)]


def exact_hash(text: str) -> str:
    normalised = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return hashlib.sha1(normalised.encode("utf-8", "surrogatepass")).hexdigest()


class DedupKeyWriter(PipelineStep):
    """Writes, in stream order, what choosing a winner needs: (idx, id, repo, path, stars, score, hash).

    `idx` is the document's position in this rank's stream, the index datatrove's MinHash
    stages use, so clusters map back to documents.
    """

    type = "🫂 - DEDUP"
    name = "🔑 dedup keys"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data, rank: int = 0, world_size: int = 1):
        rows = []
        for idx, doc in enumerate(data):
            meta = doc.metadata
            meta["dedup_idx"] = idx
            rows.append(
                {
                    "idx": idx,
                    "id": doc.id,
                    "repo": meta["repo"],
                    "path": meta["path"],
                    "stars": int(meta.get("stars") or 0),
                    "score": float(meta.get("score") or 0),
                    "exact_hash": exact_hash(doc.text),
                }
            )
            yield doc
        os.makedirs(self.folder, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=KEY_SCHEMA), f"{self.folder}/{rank:05d}.parquet")


def _read_clusters(folder: str) -> dict[tuple[int, int], int]:
    """(rank, idx) -> cluster id from datatrove's `NNNNNN.clusters` files (pairs of little-endian u32)."""
    clusters = {}
    if not os.path.isdir(folder):
        return clusters
    for name in sorted(os.listdir(folder)):
        if name.endswith(".clusters"):
            rank = int(name.split(".")[0])
            with open(f"{folder}/{name}", "rb") as fh:
                for idx, cluster in struct.iter_unpack("<II", fh.read()):
                    clusters[(rank, idx)] = cluster
    return clusters


class DuplicateResolver(PipelineStep):
    """One task: merges exact-hash groups and MinHash clusters, keeps each group's best copy and
    every member that is not a verified copy of a kept one (see the module docstring)."""

    type = "🫂 - DEDUP"
    name = "🏆 choose kept copies"

    def __init__(self, keys_folder: str, clusters_folder: str, shingles_folder: str, output_file: str,
                 min_similarity: float = 0.7):
        super().__init__()
        self.keys_folder, self.clusters_folder, self.output_file = keys_folder, clusters_folder, output_file
        self.shingles_folder, self.min_similarity = shingles_folder, min_similarity

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        keys = {}
        for name in sorted(os.listdir(self.keys_folder)) if os.path.isdir(self.keys_folder) else []:
            file_rank = int(name.split(".")[0])
            for row in pq.read_table(f"{self.keys_folder}/{name}").to_pylist():
                keys[(file_rank, row["idx"])] = row
        parent = {node: node for node in keys}

        def find(node):
            while parent[node] != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            return node

        def union(a, b):
            parent[find(a)] = find(b)

        first_with_hash: dict[str, tuple] = {}
        for node, row in keys.items():
            union(node, first_with_hash.setdefault(row["exact_hash"], node))
        first_in_cluster: dict[int, tuple] = {}
        for node, cluster in _read_clusters(self.clusters_folder).items():
            if node in keys:
                union(node, first_in_cluster.setdefault(cluster, node))
        groups: dict[tuple, list] = {}
        for node in keys:
            groups.setdefault(find(node), []).append((node, keys[node]))
        stored = ShingleSets(self.shingles_folder)
        rows = []
        for members in groups.values():
            if len(members) < 2:
                continue
            members.sort(key=lambda m: (-m[1]["stars"], -m[1]["score"], m[1]["repo"], m[1]["path"], m[0]))
            for (loser_rank, loser_idx), loser, winner, kind in self._copies(members, stored):
                rows.append(
                    {
                        "rank": loser_rank,
                        "idx": loser_idx,
                        "id": loser["id"],
                        "kept_id": winner["id"],
                        "kept_repo": winner["repo"],
                        "kept_path": winner["path"],
                        "kind": kind,
                    }
                )
                self.stat_update(kind)
        os.makedirs(os.path.dirname(self.output_file), exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=DUPLICATE_SCHEMA), self.output_file)
        return iter(())

    def _copies(self, members: list, stored: ShingleSets):
        """(node, row, kept row, kind) of each member (best first) that copies an earlier kept member."""
        kept = [members[0]]
        shingle_sets = {}

        def similar(node, other) -> bool:
            if self.min_similarity == 0:
                return True
            for member in (node, other):
                if member not in shingle_sets:
                    shingle_sets[member] = stored.get(*member)
            return any(
                jaccard(mine, theirs) >= self.min_similarity
                for mine, theirs in zip(shingle_sets[node], shingle_sets[other], strict=True)
            )

        for node, row in members[1:]:
            copied = next((k for k in kept if k[1]["exact_hash"] == row["exact_hash"]), None)
            kind = "exact_duplicate"
            if copied is None:
                copied = next((k for k in kept if similar(node, k[0])), None)
                kind = "near_duplicate"
            if copied is None:
                kept.append((node, row))
                self.stat_update("kept_not_similar_enough")
            else:
                yield node, row, copied[1], kind


class DuplicateFilter(CurationFilter):
    """Drops the documents `DuplicateResolver` marked as duplicates of a kept copy."""

    step = "dedup"
    name = "🫂 drop duplicates"

    def __init__(self, duplicates_file: str, **kwargs):
        super().__init__(**kwargs)
        self.duplicates_file = duplicates_file
        self._duplicates: dict[int, dict] = {}

    def run(self, data, rank: int = 0, world_size: int = 1):
        table = (
            pq.read_table(self.duplicates_file).to_pylist() if os.path.exists(self.duplicates_file) else []
        )
        self._duplicates = {row["idx"]: row for row in table if row["rank"] == rank}
        return super().run(data, rank, world_size)

    def filter(self, doc: Document):
        row = self._duplicates.get(doc.metadata["dedup_idx"])
        if row:
            return self.drop(doc, row["kind"], f"kept {row['kept_repo']}/{row['kept_path']}")
        return True
