"""How often renamed-copy dedup drops a file that is not a renamed copy (its false-positive rate).

    python benchmarks/clone_precision.py [SOURCE ...] [--workers 2] [--set curate.KEY=VALUE ...] [--keep DIR]

Runs `lingcoder curate` twice on the same corpus (default: the embedded default corpus, this
interpreter's standard library and packages): with the renaming-proof view and with word
shingles only (`curate.dedup.renamed_copies=false`). Every file the first run drops as a duplicate and
the second keeps was dropped because of the new view. For each, the script compares the file with
the copy that was kept, exactly (all shingles, no MinHash estimate): the Jaccard similarity of
their renaming-proof 5-gram shingles and of their word 5-gram shingles. A drop counts as correct
when the renaming-proof similarity is at least `--min-similarity` (0.7, the similarity the word
view asks of near duplicates): the file is a copy of the kept one up to renaming and layout.
Below it the drop is a false positive (LSH noise or a chain of clusters joined two files that
are not copies). Prints every new drop, then the false positives as a share of the new drops
and of all files, then for each run how many of all its near-duplicate drops are below the
similarity in both views. `--set` overrides go to both runs (`--set curate.dedup.min_similarity=0`:
no exact verification of MinHash clusters, every member but the kept copy dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import tempfile

import pyarrow.parquet as pq

from lingcoder.config import load_stage_config
from lingcoder.data.clones import clone_token_hashes, shingles, word_shingles
from lingcoder.data.curate import CurateConfig, curate


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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="curate.KEY=VALUE",
                        help="a curate setting for both runs (repeatable)")
    parser.add_argument("--keep", help="write the curate outputs here instead of a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or tmp
        stats = {}
        for name, overrides in (("renamed", []), ("words", ["curate.dedup.renamed_copies=false"])):
            config = load_stage_config(CurateConfig, "curate", None, args.overrides + overrides, {
                "out": f"{base}/{name}", "sources": args.sources, "workers": args.workers, "quiet": True})
            with contextlib.redirect_stdout(io.StringIO()):
                stats[name] = curate(config)
        columns = ["repo", "path", "reason", "detail"]
        drops = {run: {(r["repo"], r["path"]): r for r in _rows(f"{base}/{run}/dropped/dedup", columns)}
                 for run in ("renamed", "words")}
        renamed, words = drops["renamed"], drops["words"]
        # every file's text as dedup saw it (PII redacted), from the run's intermediate output
        content = {}
        for row in _rows(f"{base}/renamed/_work/prepared", ["text", "metadata"]):
            meta = json.loads(row["metadata"])
            content[f"{meta['repo']}/{meta['path']}"] = {"content": row["text"], "language": meta["language"]}

    def similarities(key, run) -> tuple[float, float]:
        """(renaming-proof, word) exact Jaccard of a dropped file and the copy its run kept."""
        dropped = content[f"{key[0]}/{key[1]}"]
        kept = content[drops[run][key]["detail"].removeprefix("kept ")]
        clone_j = _jaccard(*(shingles(clone_token_hashes(d["content"], d["language"])[0], 5) for d in (dropped, kept)))
        return clone_j, _jaccard(*(word_shingles(d["content"]) for d in (dropped, kept)))

    new = [key for key in renamed if key not in words]
    print(f"files in: {stats['renamed']['documents_in']:,}; dropped as duplicates: {len(renamed)} with the "
          f"renaming-proof view, {len(words)} with words only; new drops: {len(new)}")
    print(f"{'renaming-proof J':>16} {'word J':>7}  dropped file -> kept copy")
    false_positives = 0
    for repo, path in sorted(new):
        kept = renamed[(repo, path)]["detail"].removeprefix("kept ")
        clone_j, word_j = similarities((repo, path), "renamed")
        wrong = clone_j < args.min_similarity
        false_positives += wrong
        print(f"{clone_j:>16.2f} {word_j:>7.2f}  {repo}/{path} -> {kept}"
              + ("   FALSE POSITIVE" if wrong else ""))
    total = stats["renamed"]["documents_in"]
    print(f"false positives: {false_positives} of {len(new)} new drops "
          f"({false_positives / max(1, len(new)):.1%}), {false_positives / total:.3%} of the {total:,} files")
    for run, label in (("renamed", "with the renaming-proof view"), ("words", "words only")):
        near = [key for key, row in drops[run].items() if row["reason"] == "near_duplicate"]
        below = sum(max(similarities(key, run)) < args.min_similarity for key in near)
        print(f"{label}: {below} of {len(near)} near-duplicate drops are below {args.min_similarity} "
              "in both views")


if __name__ == "__main__":
    main()
