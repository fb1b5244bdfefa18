"""The Parquet files `lingcoder curate` writes, their schema, and the steps that write them.

`SAMPLE_SCHEMA` (file-level and repository-level samples alike):
  id (str), repo (str), path (str; "" for a repository sample), language (str; a repository
  sample's most common language), content (str, PII redacted), size_bytes (int, bytes as read),
  stars (int), license (str), signals (str: JSON object, see quality.py / RepoSampleBuilder),
  score (float, 0-100).
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import ParquetWriter

from lingcoder.data.repo_graph import dependency_order, resolve_imports
from lingcoder.data.steps import CurationFilter

SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("repo", pa.string()),
        ("path", pa.string()),
        ("language", pa.string()),
        ("content", pa.string()),
        ("size_bytes", pa.int64()),
        ("stars", pa.int64()),
        ("license", pa.string()),
        ("signals", pa.string()),
        ("score", pa.float64()),
    ]
)
PREPARED_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])
REPO_NAME_TOKEN, FILE_SEP_TOKEN = "<|repo_name|>", "<|file_sep|>"
PERSISTED_METADATA = (
    "repo",
    "path",
    "language",
    "size_bytes",
    "stars",
    "license",
    "source",
    "signals",
    "score",
    "dedup_idx",
    "imports",
)


def sample_record(_writer, doc: Document) -> dict:
    meta = doc.metadata
    return {
        "id": doc.id,
        "repo": meta["repo"],
        "path": meta.get("path", ""),
        "language": meta["language"],
        "content": doc.text,
        "size_bytes": int(meta.get("size_bytes", 0)),
        "stars": int(meta.get("stars") or 0),
        "license": meta.get("license") or "",
        "signals": json.dumps(meta.get("signals", {}), sort_keys=True),
        "score": float(meta.get("score") or 0.0),
    }


def prepared_record(_writer, doc: Document) -> dict:
    meta = {key: doc.metadata.get(key) for key in PERSISTED_METADATA}
    return {"id": doc.id, "text": doc.text, "metadata": json.dumps(meta)}


def _writer(folder: str, adapter, schema, tag: str = "") -> ParquetWriter:
    return ParquetWriter(
        folder,
        output_filename=f"{tag}${{rank}}.parquet",
        adapter=adapter,
        schema=schema,
        use_content_defined_chunking=False,
        write_page_index=False,
        max_file_size=-1,
    )


def sample_writer(folder: str) -> ParquetWriter:
    return _writer(folder, sample_record, SAMPLE_SCHEMA)


def prepared_writer(folder: str) -> ParquetWriter:
    """Stage-one output (documents after the per-file steps) that the dedup stage reads back."""
    return _writer(folder, prepared_record, PREPARED_SCHEMA)


class PreparedReader(PipelineStep):
    """Reads back exactly this rank's stage-one file, in the order it was written."""

    type = "📖 - READER"
    name = "📖 prepared documents"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        path = f"{self.folder}/{rank:05d}.parquet"
        if not os.path.exists(path):
            return
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                self.stat_update("documents")
                yield Document(text=row["text"], id=row["id"], metadata=json.loads(row["metadata"]))


class FileSampleWriter(PipelineStep):
    """Writes each document to `file/high/` (score >= threshold) or `file/low/`, then passes it on."""

    type = "💽 - WRITER"
    name = "💽 file-level samples"

    def __init__(self, out_dir: str, threshold: float):
        super().__init__()
        self.high, self.low = sample_writer(f"{out_dir}/file/high"), sample_writer(f"{out_dir}/file/low")
        self.threshold = threshold

    def run(self, data, rank: int = 0, world_size: int = 1):
        with self.high as high, self.low as low:
            for doc in data:
                is_high = doc.metadata["score"] >= self.threshold
                (high if is_high else low).write(doc, rank)
                self.stat_update("high" if is_high else "low")
                yield doc


class RepoSampleBuilder(CurationFilter):
    """Groups the kept files of each repository and yields one sample per repository.

    Files are ordered by `dependency_order` over `resolve_imports` and joined as
    `<|repo_name|>{repo}\\n<|file_sep|>{path}\\n{content}\\n<|file_sep|>{path}\\n...`.
    Signals: `files` (ordered paths), `import_edges`, `cycles_broken`, `languages`.
    A repository with fewer than `min_files` kept files is recorded under
    `dropped/repo_sample/` (reason `too_few_files`); its files stay in the file-level output.
    """

    step = "repo_sample"
    name = "🗂️ repository samples"

    def __init__(self, min_files: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.min_files = min_files

    def filter(self, doc: Document):
        if len(doc.metadata["signals"]["files"]) < self.min_files:
            return self.drop(
                doc, "too_few_files", f"{len(doc.metadata['signals']['files'])} < {self.min_files}"
            )
        return True

    def run(self, data, rank: int = 0, world_size: int = 1):
        return super().run(self._samples(data), rank, world_size)

    def _samples(self, data):
        """One sample per run of consecutive documents of the same repository (memory: one repository).

        Readers emit a repository's files together (directories whole, JSONL/Parquet files grouped
        by repo), so a run is a whole repository, except one spread over several document files.
        """
        repo, docs = None, []
        for doc in data:
            if doc.metadata["repo"] != repo and docs:
                yield self.build(repo, docs)
                docs = []
            repo = doc.metadata["repo"]
            docs.append(doc)
        if docs:
            yield self.build(repo, docs)

    @staticmethod
    def build(repo: str, docs: list[Document]) -> Document:
        by_path = {doc.metadata["path"]: doc for doc in docs}
        deps = resolve_imports(
            {p: (d.metadata["language"], d.text) for p, d in by_path.items()},
            {p: d.metadata["imports"] for p, d in by_path.items() if d.metadata.get("imports") is not None},
        )
        order, cycles = dependency_order(deps)
        parts = [f"{REPO_NAME_TOKEN}{repo}\n"]
        parts += [f"{FILE_SEP_TOKEN}{path}\n{by_path[path].text}\n" for path in order]
        languages = Counter(d.metadata["language"] for d in docs)
        signals = {
            "files": order,
            "import_edges": sum(len(v) for v in deps.values()),
            "cycles_broken": cycles,
            "languages": dict(languages),
        }
        first = docs[0].metadata
        return Document(
            text="".join(parts),
            id=f"repo-{docs[0].id}",
            metadata={
                "repo": repo,
                "path": "",
                "language": languages.most_common(1)[0][0],
                "size_bytes": sum(d.metadata["size_bytes"] for d in docs),
                "stars": first.get("stars", 0),
                "license": first.get("license", ""),
                "signals": signals,
                "score": round(sum(d.metadata["score"] for d in docs) / len(docs), 2),
            },
        )
