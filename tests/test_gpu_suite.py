"""The GPU suite's --smoke mode on CPU: every figure is measured and lands in the table and the JSON file."""

import json
import math
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


def run_suite(*args, cwd):
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, timeout=900, cwd=cwd)


def test_smoke_run_measures_every_figure(tmp_path):
    result = run_suite("--smoke", "--out", str(tmp_path / "suite.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "suite.json").read_text())
    figures = report["figures"]
    expected = {"P1", "P1_loop", "P2", "P2_gathered_eager", "P2_grouped_eager", "P3", "P3_compiled", "T_compile",
                "T_checkpointing", "T_compile+checkpointing", "P4", "P5"}
    assert set(figures) == expected
    for key, row in figures.items():
        assert row["ratio"] is not None and math.isfinite(row["ratio"]) and row["ratio"] > 0, key
        assert key in result.stdout
    assert report["smoke"] is True and report["device"] == "cpu"


def test_bad_arguments_are_named(tmp_path):
    result = run_suite("--smoke", "--only", "P9", cwd=tmp_path)
    assert result.returncode == 2 and "unknown figure(s) ['P9']" in result.stderr
