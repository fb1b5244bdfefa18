"""Throughput of `lingcoder curate` on the embedded default corpus, with 1 and 2 local workers.

    python benchmarks/curate.py [--workers 1 2] [--keep DIR]

Prints wall time, MB/s and files/s (input bytes and files as read, every stage included) and
the ratio to one worker.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from lingcoder.data.curate import curate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", help="write the outputs under this directory instead of a temporary one")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or tmp
        for workers in args.workers:
            started = time.perf_counter()
            stats = curate(None, f"{base}/workers-{workers}", workers=workers, quiet=True)
            seconds = time.perf_counter() - started
            rows.append(
                (workers, seconds, stats["bytes_in"] / 1e6, stats["documents_in"], stats["kept"]["documents"])
            )
    print(
        f"{'workers':>7} {'seconds':>8} {'MB in':>7} {'files in':>9} {'kept':>6} {'MB/s':>6} "
        f"{'files/s':>8} {'speed-up':>8}"
    )
    for workers, seconds, mb, files, kept in rows:
        print(
            f"{workers:>7} {seconds:>8.1f} {mb:>7.1f} {files:>9,} {kept:>6,} {mb / seconds:>6.2f} "
            f"{files / seconds:>8.1f} {rows[0][1] / seconds:>7.2f}x"
        )


if __name__ == "__main__":
    main()
