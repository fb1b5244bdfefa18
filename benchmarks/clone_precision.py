"""How often renamed-copy dedup drops a file that is not a renamed copy (its false-positive rate).

    python benchmarks/clone_precision.py [SOURCE ...] [--workers 2] [--keep DIR]

Runs `lingcoder curate` twice on the same corpus (default: the embedded default corpus, this
interpreter's standard library and packages): with the renaming-proof view and with word
shingles only (`dedup.renamed_copies=false`). Every file the first run drops as a duplicate and
the second keeps was dropped because of the new view. For each, the script compares the file with
the copy that was kept, exactly (all shingles, no MinHash estimate): the Jaccard similarity of
their renaming-proof 5-gram shingles and of their word 5-gram shingles. A drop counts as correct
when the renaming-proof similarity is at least `--min-similarity` (0.7, the similarity the word
view asks of near duplicates): the file is a copy of the kept one up to renaming and layout.
Below it the drop is a false positive (LSH noise or a chain of clusters joined two files that
are not copies). Prints every new drop, then the false positives as a share of the new drops
and of all files.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import tempfile

import pyarrow.parquet as pq

from lingcoder.data.clones import clone_token_hashes, shingles, word_shingles
from lingcoder.data.curate import curate


def _rows(folder: str, columns: list[str]) -> list[dict]:
    return [row for path in sorted(glob.glob(f"{folder}/**/*.parquet", recursive=True))
            for row in pq.read_table(path, columns=columns).to_pylist()]


def _jaccard(a, b) -> float:
    first, second = set(a.ravel().tolist()), set(b.ravel().tolist())
    return len(first & second) / len(first | second) if first | second else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", help="default: the embedded default corpus")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-similarity", type=float, default=0.7)
    parser.add_argument("--keep", help="write the curate outputs here instead of a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or tmp
        stats = {}
        for name, overrides in (("renamed", []), ("words", ["dedup.renamed_copies=false"])):
            with contextlib.redirect_stdout(io.StringIO()):
                stats[name] = curate(args.sources or None, f"{base}/{name}", workers=args.workers,
                                     overrides=overrides, quiet=True)
        columns = ["repo", "path", "reason", "detail"]
        renamed = {(r["repo"], r["path"]): r for r in _rows(f"{base}/renamed/dropped/dedup", columns)}
        words = {(r["repo"], r["path"]) for r in _rows(f"{base}/words/dropped/dedup", columns)}
        # the text (PII redacted, as dedup saw it) of each new drop (kept by the word-only run) and of
        # its kept copy (kept by this run)
        content = {f"{r['repo']}/{r['path']}": r for run in ("words", "renamed")
                   for r in _rows(f"{base}/{run}/file", ["repo", "path", "language", "content"])}
    new = [key for key in renamed if key not in words]
    print(f"files in: {stats['renamed']['documents_in']:,}; dropped as duplicates: {len(renamed)} with the "
          f"renaming-proof view, {len(words)} with words only; new drops: {len(new)}")
    print(f"{'renaming-proof J':>16} {'word J':>7}  dropped file -> kept copy")
    false_positives = 0
    for repo, path in sorted(new):
        dropped, kept = content[f"{repo}/{path}"], content[renamed[(repo, path)]["detail"].removeprefix("kept ")]
        clone_j = _jaccard(*(shingles(clone_token_hashes(d["content"], d["language"])[0], 5) for d in (dropped, kept)))
        word_j = _jaccard(*(word_shingles(d["content"]) for d in (dropped, kept)))
        wrong = clone_j < args.min_similarity
        false_positives += wrong
        print(f"{clone_j:>16.2f} {word_j:>7.2f}  {repo}/{path} -> {kept['repo']}/{kept['path']}"
              + ("   FALSE POSITIVE" if wrong else ""))
    total = stats["renamed"]["documents_in"]
    print(f"false positives: {false_positives} of {len(new)} new drops "
          f"({false_positives / max(1, len(new)):.1%}), {false_positives / total:.3%} of the {total:,} files")


if __name__ == "__main__":
    main()
