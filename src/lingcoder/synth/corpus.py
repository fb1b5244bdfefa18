"""Reading the curated corpus: the file-level documents of a `lingcoder curate` directory.

Sources are found as tokenization finds them (`discover_sources`: every Parquet folder but the drop
log). The `repo` source is skipped when file-level sources exist: its repository samples are the
same files concatenated, so mining them again would only produce duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lingcoder.data.tokenize import discover_sources
from lingcoder.errors import LingcoderError

REPOSITORY_SOURCE = "repo"
COLUMNS = ("id", "repo", "path", "language", "content")


@dataclass(frozen=True)
class CorpusFile:
    """One curated document."""

    id: str
    repo: str
    path: str
    language: str
    content: str

    @property
    def is_python(self) -> bool:
        """Python by the curated `language` column; without one, every document is tried as Python."""
        return self.language.lower() in ("python", "")


def read_curated(curated: str | Path) -> tuple[list[CorpusFile], dict[str, str]]:
    """Every document of the curated directory's sources, and the sources skipped (name -> why)."""
    import pyarrow.parquet as pq

    sources = discover_sources(Path(curated))
    skipped = {}
    if REPOSITORY_SOURCE in sources and len(sources) > 1:
        skipped[REPOSITORY_SOURCE] = "repository samples repeat the file-level documents"
        del sources[REPOSITORY_SOURCE]
    files = []
    for name, folder in sorted(sources.items()):
        for path in sorted(folder.rglob("*.parquet")):
            try:
                schema_names = set(pq.read_schema(path).names)
                if "content" not in schema_names:
                    raise LingcoderError(f"{path}: no `content` column (is this a curated directory?)")
                table = pq.read_table(path, columns=[c for c in COLUMNS if c in schema_names])
            except LingcoderError:
                raise
            except Exception as exc:  # pyarrow raises several types for corrupt or foreign files
                raise LingcoderError(f"{path}: cannot read it as Parquet: {exc}") from None
            for row_number, row in enumerate(table.to_pylist()):
                files.append(CorpusFile(
                    id=str(row.get("id") or f"{name}/{path.name}/{row_number}"),
                    repo=row.get("repo") or name,
                    path=row.get("path") or row.get("id") or f"{path.name}#{row_number}",
                    language=row.get("language") or "",
                    content=row.get("content") or "",
                ))
    return files, skipped
