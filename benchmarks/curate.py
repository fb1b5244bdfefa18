"""Throughput of `lingcoder curate` on the embedded default corpus, with 1 and 2 local workers.

    python benchmarks/curate.py [--workers 1 2] [--keep DIR]

Prints wall time, MB/s and files/s (input bytes and files as read, every stage included), the
ratio to one worker and the machine's load average when each run started (other jobs on a shared
machine slow the figures down).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
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
            load = os.getloadavg()[0]
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the funnel table curate prints
                stats = curate(None, f"{base}/workers-{workers}", workers=workers, quiet=True)
            seconds = time.perf_counter() - started
            rows.append((workers, seconds, stats["bytes_in"] / 1e6, stats["documents_in"], load))
    header = ("workers", "seconds", "MB in", "files in", "MB/s", "files/s", "speed-up", "load before")
    print(" ".join(f"{h:>{max(len(h), 8)}}" for h in header))
    for workers, seconds, mb, files, load in rows:
        cells = (workers, f"{seconds:.1f}", f"{mb:.1f}", f"{files:,}", f"{mb / seconds:.2f}",
                 f"{files / seconds:.1f}", f"{rows[0][1] / seconds:.2f}x", f"{load:.1f}")
        print(" ".join(f"{c:>{max(len(h), 8)}}" for c, h in zip(cells, header, strict=True)))
    print(f"({os.cpu_count()} CPUs; 'load before' is the 1-minute load average when a run started)")


if __name__ == "__main__":
    main()
