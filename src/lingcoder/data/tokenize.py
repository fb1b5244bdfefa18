"""`lingcoder tokenizer train` and `lingcoder tokenize`: curated Parquet -> a tokenizer, and -> token
shards (shards.py) with FIM and a validation split.

Runs as datatrove stages (its ParquetReader, then our `TokenShardWriter` step; last, the index)
on the same executors as curation (local, Ray, Slurm), one task per input file, so the output does
not depend on the worker count. Each
Parquet folder under the curated directory becomes one mixture source, named by its relative path
(`file/high` -> `file-high`); `--source NAME=PATH` names sources explicitly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from tokenizers import Tokenizer

from lingcoder.data.executors import ExecutorConfig, run_stages
from lingcoder.data.fim import FimConfig, encode_document
from lingcoder.data.shards import SPLITS, ShardWriter, TokenIndex, token_dtype, write_index
from lingcoder.data.split import is_held_out
from lingcoder.data.tokenizer import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, save_tokenizer, train_tokenizer
from lingcoder.errors import LingcoderError

IGNORED_FOLDERS = {"dropped", "_work", "logs", ".logs"}  # drop log, curation scratch


@dataclass
class TokenizerTrainConfig:
    """`lingcoder tokenizer train` (the recipe's `[tokenizer]` table)."""

    data: str  # a curated directory, or a folder / file of Parquet with a `content` column
    out: str  # directory for tokenizer.json and tokenizer_config.json
    vocab_size: int = 4096  # special tokens and the 256 bytes included
    max_documents: int = 0  # train on at most this many documents; 0 = all


@dataclass
class TokenizeConfig:
    """`lingcoder tokenize` (the recipe's `[tokenize]` table)."""

    tokenizer: str  # directory with tokenizer.json
    out: str  # output tokens directory
    curated: str | None = None  # every Parquet folder in it is a source (unless `sources` names them)
    sources: list[str] = field(default_factory=list)  # NAME=PATH
    fim_rate: float = 0.5  # share of documents turned into fill-in-the-middle
    spm_rate: float = 0.5  # among FIM documents, share in SPM order (else PSM)
    val_fraction: float = 0.01  # share of documents held out for validation
    seed: int = 0  # seed of the FIM and split draws (per document id)
    workers: int = 0  # local worker processes; 0 = every core
    executor: str = "local"  # local, ray or slurm (datatrove's executors, as for curate)
    executor_options: ExecutorConfig = field(default_factory=ExecutorConfig)
    verbose: bool = False  # show datatrove's per-task logs

    @property
    def fim(self) -> FimConfig:
        return FimConfig(self.fim_rate, self.spm_rate, self.seed)


class TokenShardWriter(PipelineStep):
    """Tokenizes each document (FIM at the configured rate), sends it to `train` or `val` by a hash
    of its id, and appends it to this rank's shards of its source."""

    name = "🔢 tokenize"
    type = "✍️ writer"

    def __init__(self, tokenizer_file: str, out_dir: str, source: str, fim: FimConfig, val_fraction: float,
                 seed: int):
        super().__init__()
        self.tokenizer_file, self.out_dir, self.source = tokenizer_file, out_dir, source
        self.fim, self.val_fraction, self.seed = fim, val_fraction, seed

    def run(self, data, rank: int = 0, world_size: int = 1):
        tokenizer = Tokenizer.from_file(self.tokenizer_file)
        eos = tokenizer.token_to_id(EOS)
        dtype = token_dtype(tokenizer.get_vocab_size())
        writers = {split: ShardWriter(Path(self.out_dir) / self.source / split, rank, dtype) for split in SPLITS}
        try:
            for doc in data:
                with self.track_time():
                    val = is_held_out(doc.id, self.val_fraction, self.seed)
                    ids, layout = encode_document(tokenizer, doc.text, doc.id, self.fim)
                    split = "val" if val else "train"
                    writers[split].add([eos, *ids])
                    self.stat_update(split, f"fim_{layout}")
                    self.stat_update("tokens", value=len(ids) + 1)
                    self.update_doc_stats(doc)
        finally:
            for writer in writers.values():
                writer.close()
        return
        yield  # a generator, as datatrove steps are


def discover_sources(curated: Path) -> dict[str, Path]:
    """Each folder holding Parquet files (the drop log excluded) -> a source named by its path."""
    if not curated.is_dir():
        raise LingcoderError(f"{curated}: curated directory not found")
    folders = sorted({p.parent for p in curated.rglob("*.parquet")
                      if not IGNORED_FOLDERS & set(p.relative_to(curated).parts)})
    if not folders:
        raise LingcoderError(f"{curated}: no Parquet files (run `lingcoder curate` first)")
    return {("-".join(f.relative_to(curated).parts) or curated.name): f for f in folders}


def parse_sources(specs: list[str]) -> dict[str, Path]:
    sources = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise LingcoderError(f"--source {spec!r}: expected NAME=PATH (a Parquet file or folder)")
        if not Path(path).exists():
            raise LingcoderError(f"--source {spec!r}: {path} does not exist")
        sources[name] = Path(path)
    return sources


class TokenIndexWriter(PipelineStep):
    """The last stage: scans every shard and writes `index.json` (whose presence marks completion)."""

    name = "🗂 token index"
    type = "✍️ writer"

    def __init__(self, out_dir: str, vocab_size: int, eos_token_id: int, settings: dict):
        super().__init__()
        self.out_dir, self.vocab_size, self.eos_token_id, self.settings = out_dir, vocab_size, eos_token_id, settings

    def run(self, data, rank: int = 0, world_size: int = 1):
        write_index(Path(self.out_dir), vocab_size=self.vocab_size, eos_token_id=self.eos_token_id,
                    settings=self.settings)
        return
        yield


def tokenize(config: TokenizeConfig) -> dict | None:
    """Tokenize every source into `config.out` on datatrove's local, Ray or Slurm executor; return the
    index (also `out/index.json`), or None when the stages were submitted to Slurm."""
    from datatrove.pipeline.readers import ParquetReader

    fim, val_fraction, seed, tokenizer_dir = config.fim, config.val_fraction, config.seed, config.tokenizer
    if not 0 <= val_fraction < 1:
        raise LingcoderError(f"tokenize.val_fraction must be in [0, 1), got {val_fraction}")
    named = parse_sources(config.sources) if config.sources else discover_sources(Path(config.curated or ""))
    tokenizer_file = Path(tokenizer_dir) / "tokenizer.json"
    tokenizer = load_checked_tokenizer(tokenizer_file, fim)
    out = Path(config.out)
    if out.exists():
        shutil.rmtree(out)  # a partial earlier run must not leak shards into this one
    out.mkdir(parents=True)
    for extra in ("tokenizer.json", "tokenizer_config.json"):
        if (Path(tokenizer_dir) / extra).is_file():
            shutil.copy(Path(tokenizer_dir) / extra, out / extra)
    stages = []
    for name, path in named.items():
        files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
        if not files:
            raise LingcoderError(f"source {name!r}: no Parquet files under {path}")
        reader = ParquetReader(str(path.parent if path.is_file() else path), text_key="content", id_key="id",
                               glob_pattern=path.name if path.is_file() else "**/*.parquet",
                               recursive=not path.is_file())
        step = TokenShardWriter(str(tokenizer_file), str(out), name, fim, val_fraction, seed)
        stages.append((f"tokenize_{name}", [reader, step], len(files)))
    settings = {"tokenizer_sha256": hashlib.sha256(tokenizer_file.read_bytes()).hexdigest(),
                "fim": dataclasses.asdict(fim), "val_fraction": val_fraction, "seed": seed}
    index_step = TokenIndexWriter(str(out), tokenizer.get_vocab_size(), tokenizer.token_to_id(EOS), settings)
    stages.append(("token_index", [index_step], 1))
    finished = run_stages(stages, config.executor, config.workers or os.cpu_count() or 1, str(out / ".logs"),
                          config.executor_options, quiet=not config.verbose)
    return TokenIndex(out).data if finished else None


def load_checked_tokenizer(path: Path, fim: FimConfig) -> Tokenizer:
    if not path.is_file():
        raise LingcoderError(f"{path.parent}: no tokenizer.json (run `lingcoder tokenizer train` first)")
    tokenizer = Tokenizer.from_file(str(path))
    needed = [EOS] + ([FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX] if fim.rate > 0 else [])
    missing = [t for t in needed if tokenizer.token_to_id(t) is None]
    if missing:
        raise LingcoderError(f"{path}: tokenizer lacks the special token(s) {missing}"
                             + (" (or set the FIM rate to 0)" if EOS not in missing else ""))
    return tokenizer


def parquet_texts(path: str | Path, max_documents: int = 0):
    """The `content` column of a Parquet file, or of every source folder of a curated directory."""
    import pyarrow.parquet as pq

    path = Path(path)
    folders = [path] if path.is_file() else discover_sources(path).values()
    files = [f for folder in folders for f in ([folder] if folder.is_file() else sorted(folder.rglob("*.parquet")))]
    seen = 0
    for file in files:
        try:
            table = pq.read_table(file, columns=["content"])
        except Exception as exc:  # pyarrow raises several types for corrupt or foreign files
            raise LingcoderError(f"{file}: cannot read a `content` column: {exc}") from None
        for text in table.column("content").to_pylist():
            if max_documents and seen >= max_documents:
                return
            seen += 1
            yield text or ""


def train_tokenizer_on_parquet(config: TokenizerTrainConfig) -> dict:
    """Train on curated documents, save, and check the round trip on every document trained on."""
    data, max_documents = config.data, config.max_documents
    tokenizer = train_tokenizer(parquet_texts(data, max_documents), config.vocab_size)
    save_tokenizer(tokenizer, config.out)
    documents = ok = 0
    for text in parquet_texts(data, max_documents):
        documents += 1
        ok += tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == text
    if ok != documents:
        raise LingcoderError(f"tokenizer round trip failed on {documents - ok} of {documents} documents")
    return {"vocab_size": tokenizer.get_vocab_size(), "documents": documents, "round_trip_ok": ok}
