"""The whole of `lingcoder curate` against datatrove's MinHash dedup alone, side by side in one run.

    python benchmarks/curate.py [--runs 3] [--workers 2] [--keep DIR]

The corpus is this interpreter's standard library (every `.py` file outside `site-packages`,
about 1,790 files and 31.5 MB) written as one JSONL file of {repo, path, content} records, one
repository per top-level package as in the default corpus. Two commands run on it, each as a
fresh process (interpreter start and imports included), alternated `--runs` times:

- curate:  `python -m lingcoder curate CORPUS --out DIR --workers W` (every step: rules, PII,
           decontamination, analysis and quality, exact + MinHash + renamed-copy dedup, samples);
- minhash: datatrove's 4-stage MinHash dedup alone (JsonlReader -> signatures -> LSH buckets ->
           clusters -> filter + JsonlWriter), 5-grams, 14 buckets x 8 hashes (datatrove's
           defaults), on the same `W` local workers. datatrove's default word tokenizer needs
           spaCy, so the signatures use the code tokenizer `lingcoder curate` uses; 32-bit hashes
           (datatrove 0.10.1's bucket stage rejects its own 64-bit signatures); workers start
           as `lingcoder curate` starts them on Linux (`fork`: datatrove's default `forkserver`
           re-imports every module in every worker of every stage, seconds each on a busy
           machine), so the ratio compares the work, not the process start-up.

Prints each run's seconds and the 1-minute load average when it started (the machine may be
shared: other jobs slow both commands), then the medians and their ratio curate / minhash.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

LOG_DIR = "logs"


def write_stdlib_jsonl(path: Path) -> tuple[int, int]:
    """The standard library's `.py` files as JSONL; returns (files, bytes). Non-UTF-8 files are left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = total = 0
    with open(path, "w", encoding="utf-8") as out:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__"))
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                file = Path(dirpath) / name
                try:
                    content = file.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                relative = file.relative_to(root).as_posix()
                top = relative.split("/", 1)[0]
                repo = "stdlib" if "/" not in relative else f"stdlib/{top}"
                out.write(json.dumps({"repo": repo, "path": relative, "content": content}) + "\n")
                files += 1
                total += file.stat().st_size
    return files, total


def minhash_alone(corpus: str, out: str, workers: int) -> None:
    """datatrove's four MinHash stages on `corpus` (run in a child process by `main`)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    from lingcoder.data.dedup import CodeWordTokenizer

    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, hash_config=HashConfig(precision=32))
    folder, name = os.path.split(os.path.abspath(corpus))

    def reader():
        return JsonlReader(folder, glob_pattern=name, text_key="content", id_key="path")

    stages = [
        ([reader(), MinhashDedupSignature(f"{out}/signatures", config=config, language=CodeWordTokenizer())],
         workers),
        ([MinhashDedupBuckets(f"{out}/signatures", f"{out}/buckets", config=config)], config.num_buckets),
        ([MinhashDedupCluster(f"{out}/buckets", f"{out}/remove", config=config)], 1),
        ([reader(), MinhashDedupFilter(f"{out}/remove"), JsonlWriter(f"{out}/output")], workers),
    ]
    previous = None
    for index, (pipeline, tasks) in enumerate(stages):
        previous = LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks),
                                         logging_dir=f"{out}/{LOG_DIR}/{index}", depends=previous,
                                         start_method="fork")
    previous.run()


def timed(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as fh:
        result = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed (exit {result.returncode}); see {log}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="alternated runs of each command")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", help="write the corpus and outputs here instead of a temporary directory")
    parser.add_argument("--minhash-only", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minhash_only:
        minhash_alone(*args.minhash_only, args.workers)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        base.mkdir(parents=True, exist_ok=True)
        corpus = base / "stdlib.jsonl"
        files, size = write_stdlib_jsonl(corpus)
        print(f"corpus: {files:,} files, {size / 1e6:.1f} MB ({corpus.name}); {os.cpu_count()} CPUs; "
              f"{args.workers} workers")
        commands = {
            "curate": [sys.executable, "-m", "lingcoder", "curate", str(corpus), "--out", str(base / "curated"),
                       "--workers", str(args.workers)],
            "minhash": [sys.executable, __file__, "--workers", str(args.workers), "--minhash-only", str(corpus),
                        str(base / "minhash")],
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(args.runs):
            order = list(commands) if run % 2 == 0 else list(commands)[::-1]  # alternate who goes first
            for name in order:
                load = os.getloadavg()[0]
                if name == "minhash":
                    subprocess.run(["rm", "-rf", str(base / "minhash")], check=True)
                took = timed(commands[name], base / f"{name}-{run}.log")
                seconds[name].append(took)
                print(f"run {run + 1}  {name:<8} {took:7.1f} s   load before {load:.1f}", flush=True)
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        print(f"median   curate {medians['curate']:.1f} s   minhash {medians['minhash']:.1f} s   "
              f"ratio curate / minhash {medians['curate'] / medians['minhash']:.2f}x")


if __name__ == "__main__":
    main()
