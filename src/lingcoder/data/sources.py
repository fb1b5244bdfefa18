"""Sources of raw files and the datatrove reader that turns them into documents.

A SOURCE on the command line is one of:
- a git checkout (a directory with `.git`): its tracked files (`git ls-files`), one repository;
- a single repository: a directory with at least one regular file at its top level;
- a directory of repositories: a directory holding only sub-directories, each one repository;
- `repo:PATH` / `repos:PATH` force the last two readings;
- a JSONL (`.jsonl`, `.jsonl.gz`) or Parquet (`.parquet`) file of documents with fields `repo`,
  `path`, `content` and optional `stars`, `license`.

Planning (`plan_units`) only lists top-level entries and checks that sources exist; reading
happens in the `SourceReader` step, one `Unit` (repository or document file) at a time, units
split over ranks. Nothing is lost on the way: a file that cannot be read, vanishes, is a
symlink (never followed, so no symlink loop), is not a regular file, is binary, is not UTF-8 or
exceeds the size cap is still yielded, empty and marked with `read_problem`; the `decode_size`
step drops it with that reason. A malformed JSONL line or an unreadable Parquet file likewise
becomes one marked document naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from lingcoder.errors import LingcoderError
from lingcoder.jsonl import JsonlReader, UnreadableFile

IGNORED_DIRS = {".git", ".hg", ".svn", "__pycache__"}
BINARY_SNIFF_BYTES = 8192
PROGRESS_EVERY = 2000


@dataclass(frozen=True)
class Unit:
    """One piece of reading work: a repository directory or a file of documents."""

    kind: str  # "dir", "git", "jsonl" or "parquet"
    path: str  # repository root (dir/git: files are read relative to `base`) or the documents file
    repo: str  # repository name (dir/git) or the documents file's name (jsonl/parquet)
    base: str = ""  # dir/git: paths in the output are relative to this directory
    files: tuple[str, ...] = ()  # dir: restrict to these top-level entries of `path` (default corpus)
    license: str = ""
    stars: int = 0
    part: int = 0  # jsonl/parquet: read only the repositories of this part of the file ...
    parts: int = 1  # ... when it is split into this many parts (`split_document_files`)


def split_document_files(units: list[Unit], tasks: int) -> list[Unit]:
    """Split JSONL and Parquet units into parts so that there are about `tasks` units to spread over
    ranks (a single big file would otherwise keep every rank but one idle). Each part reads the
    whole file and keeps the repositories `_parts_of_repositories` gives it: whole repositories, so
    repository samples stay whole; a part costs one extra read and JSON parse of the file."""
    files = [u for u in units if u.kind in ("jsonl", "parquet")]
    if not files or len(units) >= tasks:
        return units
    parts = -(-(tasks - len(units) + len(files)) // len(files))
    out = [u for u in units if u not in files]
    for unit in files:
        out += [replace(unit, part=part, parts=parts) for part in range(parts)]
    return out


def _parts_of_repositories(docs: list[Document], parts: int) -> dict[str, int]:
    """Repository -> part, balancing bytes: the largest repositories first, each to the lightest part."""
    sizes: dict[str, int] = {}
    for doc in docs:
        sizes[doc.metadata["repo"]] = sizes.get(doc.metadata["repo"], 0) + doc.metadata["size_bytes"] + 1
    loads = [0] * parts
    assignment = {}
    for repo in sorted(sizes, key=lambda r: (-sizes[r], r)):
        part = loads.index(min(loads))
        assignment[repo] = part
        loads[part] += sizes[repo]
    return assignment


def plan_units(sources: list[str]) -> list[Unit]:
    """Turn command-line SOURCE strings into reading units; raise LingcoderError for a bad one."""
    units: list[Unit] = []
    for source in sources:
        units.extend(_units_of(source))
    return units


def _units_of(source: str) -> list[Unit]:
    force = None
    if source.startswith(("repo:", "repos:")):
        force, _, source = source.partition(":")
    path = Path(source).expanduser()
    if not path.exists():
        raise LingcoderError(f"source {source}: no such file or directory")
    if not os.access(path, os.R_OK):
        raise LingcoderError(f"source {source}: not readable (permission denied)")
    if path.is_file():
        name = path.name
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            return [Unit("jsonl", str(path), name)]
        if name.endswith(".parquet"):
            _check_parquet_columns(path)
            return [Unit("parquet", str(path), name)]
        raise LingcoderError(f"source {source}: expected a directory, .jsonl or .parquet file")
    if force == "repos":
        return _subdirectory_repos(path)
    if force == "repo" or (path / ".git").exists() or _has_top_level_file(path):
        return [_repo_unit(path)]
    return _subdirectory_repos(path)


def _repo_unit(path: Path) -> Unit:
    kind = "git" if (path / ".git").exists() else "dir"
    return Unit(kind, str(path), path.resolve().name, base=str(path))


def _subdirectory_repos(path: Path) -> list[Unit]:
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir())  # a linked repository is read too
    except OSError as exc:
        raise LingcoderError(f"source {path}: cannot list directory: {exc.strerror}") from None
    return [_repo_unit(child) for child in children if child.name not in IGNORED_DIRS]


def _has_top_level_file(path: Path) -> bool:
    try:
        return any(entry.is_file(follow_symlinks=False) for entry in os.scandir(path))
    except OSError as exc:
        raise LingcoderError(f"source {path}: cannot list directory: {exc.strerror}") from None


def _check_parquet_columns(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - a corrupt file is reported per document by the reader
        return
    missing = {"repo", "path", "content"} - names
    if missing:
        raise LingcoderError(f"source {path}: Parquet file lacks column(s) {', '.join(sorted(missing))}")


def doc_id(*parts: object) -> str:
    """A stable id from the parts that identify a document."""
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()[:20]


def make_document(
    text: str,
    repo: str,
    path: str,
    source: str,
    size: int,
    *,
    stars: int = 0,
    license: str = "",
    problem: str | None = None,
    detail: str = "",
    key: object = "",
) -> Document:
    meta = {
        "repo": repo,
        "path": path,
        "source": source,
        "size_bytes": size,
        "stars": stars,
        "license": license,
        "language": None,
    }
    if problem:
        meta["read_problem"] = problem
        meta["read_detail"] = detail
    return Document(text=text, id=doc_id(source, repo, path, key), metadata=meta)


def decode_file_bytes(raw: bytes) -> tuple[str, str | None, str]:
    """(text, problem, detail): binary files and invalid UTF-8 give an empty text and a problem."""
    if b"\0" in raw[:BINARY_SNIFF_BYTES]:
        return "", "binary", "NUL byte in the first 8 KiB"
    try:
        return raw.decode("utf-8-sig"), None, ""
    except UnicodeDecodeError as exc:
        return "", "invalid_utf8", f"byte {exc.start}: {exc.reason}"


class SourceReader(PipelineStep):
    """Reads the units assigned to this rank (`units[rank::world_size]`) as documents."""

    type = "📖 - READER"
    name = "📂 sources"

    def __init__(self, units: list[Unit], max_file_bytes: int, counts_dir: str | None = None):
        super().__init__()
        self.units = list(units)
        self.max_file_bytes = max_file_bytes
        self.counts_dir = counts_dir

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if data:
            yield from data
        docs = nbytes = 0
        started = time.monotonic()
        for unit in self.units[rank::world_size]:
            for doc in self._read_unit(unit):
                docs += 1
                nbytes += doc.metadata["size_bytes"]
                self.stat_update("documents")
                if docs % PROGRESS_EVERY == 0:
                    logger.info(
                        f"rank {rank}: read {docs} files, {nbytes / 2**20:.1f} MiB "
                        f"({time.monotonic() - started:.0f}s)"
                    )
                yield doc
        if self.counts_dir:
            os.makedirs(self.counts_dir, exist_ok=True)
            with open(f"{self.counts_dir}/{rank:05d}.json", "w") as fh:
                json.dump({"documents": docs, "bytes": nbytes}, fh)

    def _read_unit(self, unit: Unit) -> Iterator[Document]:
        if unit.parts > 1:
            docs = list(self._read_unit(replace(unit, part=0, parts=1)))
            assignment = _parts_of_repositories(docs, unit.parts)
            yield from (doc for doc in docs if assignment[doc.metadata["repo"]] == unit.part)
        elif unit.kind in ("dir", "git"):
            yield from self._read_repository(unit)
        elif unit.kind == "jsonl":
            yield from read_jsonl(unit.path, self.max_file_bytes)
        else:
            yield from read_parquet(unit.path, self.max_file_bytes)

    def _read_repository(self, unit: Unit) -> Iterator[Document]:
        base = Path(unit.base)
        for rel, problem, detail in _repository_entries(unit):
            if problem:
                yield make_document(
                    "",
                    unit.repo,
                    rel,
                    unit.base,
                    0,
                    stars=unit.stars,
                    license=unit.license,
                    problem=problem,
                    detail=detail,
                )
            else:
                yield self._read_file(base / rel, rel, unit)

    def _read_file(self, full: Path, rel: str, unit: Unit) -> Document:
        def doc(text="", size=0, problem=None, detail=""):
            return make_document(
                text,
                unit.repo,
                rel,
                unit.base,
                size,
                stars=unit.stars,
                license=unit.license,
                problem=problem,
                detail=detail,
            )

        try:
            st = full.lstat()
            if full.is_symlink():
                return doc(problem="symlink", detail=f"-> {os.readlink(full)}")
            if not full.is_file():
                return doc(problem="not_regular_file")
            if st.st_size > self.max_file_bytes:
                return doc(
                    size=st.st_size, problem="too_large", detail=f"{st.st_size} bytes > {self.max_file_bytes}"
                )
            with open(full, "rb") as fh:
                raw = fh.read(self.max_file_bytes + 1)
        except FileNotFoundError:
            return doc(problem="vanished", detail="file disappeared while reading")
        except OSError as exc:
            return doc(problem="unreadable", detail=exc.strerror or str(exc))
        if len(raw) > self.max_file_bytes:
            return doc(size=len(raw), problem="too_large", detail=f"grew past {self.max_file_bytes} bytes")
        text, problem, detail = decode_file_bytes(raw)
        return doc(text, len(raw), problem, detail)


def _repository_entries(unit: Unit) -> Iterator[tuple[str, str | None, str]]:
    """(relative path, problem, detail) for every entry of a repository, sorted, never following links."""
    root, base = Path(unit.path), Path(unit.base)
    if unit.kind == "git":
        tracked = _git_tracked(root)
        if tracked is not None:
            prefix = root.relative_to(base).as_posix() if root != base else ""
            for rel in tracked:
                yield (f"{prefix}/{rel}" if prefix else rel), None, ""
            return
    tops = [root / name for name in unit.files] if unit.files else [root]
    for top in tops:
        if top.is_file() or top.is_symlink():
            yield top.relative_to(base).as_posix(), None, ""
            continue
        yield from _walk(top, base)


def _unlistable(err: OSError, base: Path) -> tuple[str, str, str]:
    """The drop entry for a directory `os.walk` could not list (path relative to `base`, with `/`)."""
    path = Path(err.filename or base)
    rel = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
    return rel + "/", "unreadable", f"cannot list directory: {err.strerror}"


def _walk(top: Path, base: Path) -> Iterator[tuple[str, str | None, str]]:
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(top, onerror=errors.append, followlinks=False):
        current = Path(dirpath)
        while errors:
            yield _unlistable(errors.pop(0), base)
        dirnames.sort()
        for name in list(dirnames):
            sub = current / name
            if sub.is_symlink():
                dirnames.remove(name)
                yield sub.relative_to(base).as_posix(), None, ""  # read as a symlink -> dropped
            elif name in IGNORED_DIRS:
                dirnames.remove(name)
                for inner in _all_files(sub):
                    yield inner.relative_to(base).as_posix(), "ignored_dir", f"inside {name}/"
        for name in sorted(filenames):
            yield (current / name).relative_to(base).as_posix(), None, ""
    for err in errors:
        yield _unlistable(err, base)


def _all_files(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _git_tracked(root: Path) -> list[str] | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, timeout=300
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning(f"{root}: git ls-files failed ({exc}); reading every file except .git/")
        return None
    return sorted(p for p in out.decode("utf-8", "surrogateescape").split("\0") if p)


def _record_document(record: object, source: str, where: str, key: object, max_bytes: int) -> Document:
    """A document from one JSONL/Parquet record; malformed records give a marked empty document."""
    name = os.path.basename(source)
    if not isinstance(record, dict):
        return make_document(
            "",
            name,
            where,
            source,
            0,
            problem="malformed_record",
            detail=f"{name} {where}: expected an object, got {type(record).__name__}",
            key=key,
        )
    repo, path, content = record.get("repo"), record.get("path"), record.get("content")
    missing = [k for k, v in (("repo", repo), ("path", path), ("content", content)) if not isinstance(v, str)]
    if missing:
        return make_document(
            "",
            str(repo or name),
            str(path or where),
            source,
            0,
            problem="malformed_record",
            detail=f"{name} {where}: missing or non-string {', '.join(missing)}",
            key=key,
        )
    stars = record.get("stars") or 0
    stars = int(stars) if isinstance(stars, int | float) else 0
    license = record.get("license") or ""
    size = len(content.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return make_document(
            "",
            repo,
            path,
            source,
            size,
            stars=stars,
            license=str(license),
            problem="too_large",
            detail=f"{size} bytes > {max_bytes}",
            key=key,
        )
    return make_document(content, repo, path, source, size, stars=stars, license=str(license), key=key)


def _grouped_by_repo(docs: list[Document]) -> Iterator[Document]:
    """Documents of one repository together (first-appearance order), so repo samples see them all."""
    groups: dict[str, list[Document]] = {}
    for doc in docs:
        groups.setdefault(doc.metadata["repo"], []).append(doc)
    for group in groups.values():
        yield from group


def read_jsonl(path: str, max_bytes: int) -> Iterator[Document]:
    """Documents of a JSONL(.gz) file; a line that is not JSON (or not UTF-8) becomes a marked empty
    document, so every line is accounted for."""
    name = os.path.basename(path)
    reader = JsonlReader(path, on_error="skip", objects_only=False)
    numbered: list[tuple[int, Document]] = []
    unreadable = None
    try:
        for line in reader:
            numbered.append((line.lineno, _record_document(line.value, path, f"line {line.lineno}", line.lineno,
                                                           max_bytes)))
    except UnreadableFile as exc:
        unreadable = make_document("", name, "", path, 0, problem="unreadable", detail=str(exc), key="file")
    for bad in reader.skipped:  # not JSON or not UTF-8, in line order among the good ones
        where = f"line {bad.lineno}"
        numbered.append((bad.lineno, make_document("", name, where, path, bad.size, problem="malformed_record",
                                                   detail=f"{name} {where}: {bad.kind}: {bad.detail}",
                                                   key=bad.lineno)))
    docs = [doc for _, doc in sorted(numbered, key=lambda pair: pair[0])]
    yield from _grouped_by_repo(docs + ([unreadable] if unreadable else []))


def read_parquet(path: str, max_bytes: int) -> Iterator[Document]:
    import pyarrow.parquet as pq

    name = os.path.basename(path)
    docs: list[Document] = []
    row = 0
    try:
        pfile = pq.ParquetFile(path)
        wanted = [c for c in ("repo", "path", "content", "stars", "license") if c in pfile.schema_arrow.names]
        for batch in pfile.iter_batches(columns=wanted, batch_size=1024):
            for record in batch.to_pylist():
                docs.append(_record_document(record, path, f"row {row}", row, max_bytes))
                row += 1
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        docs.append(
            make_document(
                "",
                name,
                f"row {row}+",
                path,
                os.path.getsize(path) if os.path.exists(path) else 0,
                problem="corrupt_parquet",
                detail=f"{name}: {exc}",
                key="file",
            )
        )
    yield from _grouped_by_repo(docs)
