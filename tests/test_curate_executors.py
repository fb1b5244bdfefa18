"""The Ray and Slurm executors: same output as the local one (Ray), right arguments (Slurm)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lingcoder.data.curate import CurateConfig, CurateExecutorConfig, build_stages, curate
from lingcoder.data.executors import ExecutorConfig, build_executors
from lingcoder.data.sources import plan_units
from lingcoder.errors import LingcoderError

FILES = {
    "one/app/main.py": 'from app.util import twice\n\n\ndef run(values):\n    """Double all."""\n'
    "    return [twice(v) for v in values]\n",
    "one/app/util.py": 'def twice(value):\n    """Times two."""\n    result = value * 2\n    return result\n',
    "one/app/broken.py": "def broken(:\n    pass\n    x = 1\n",
    "two/lib/copy.py": 'def twice(value):\n    """Times two."""\n    result = value * 2\n    return result\n',
    "two/lib/notes.weird": "???",
    "two/src/index.js": "import { helper } from './helper';\nexport const a = helper(1);\nconsole.log(a);\n",
    "two/src/helper.js": "export function helper(x) {\n  const y = x + 1;\n  return y * 2;\n}\n",
}


def make_corpus(root: Path) -> str:
    for rel, text in FILES.items():
        path = root / "repos" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root / "repos")


def snapshot(out: Path) -> dict:
    result = {}
    for folder in ("file/high", "file/low", "repo", "dropped"):
        rows = []
        for path in sorted((out / folder).rglob("*.parquet")):
            rows += pq.read_table(path).to_pylist()
        result[folder] = sorted(rows, key=lambda r: (r["repo"], r["path"], r.get("step", "")))
    return result


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install lingcoder[ray])"
)
def test_ray_executor_gives_the_same_output_as_local(tmp_path):
    source = make_corpus(tmp_path)
    local = curate(CurateConfig(str(tmp_path / "local"), [source], workers=2, quiet=True))
    on_ray = curate(CurateConfig(str(tmp_path / "ray"), [source], workers=2, quiet=True,
                                executor=CurateExecutorConfig(kind="ray")))
    import ray

    ray.shutdown()
    assert snapshot(tmp_path / "local") == snapshot(tmp_path / "ray")
    for key in ("documents_in", "kept", "dropped", "by_step", "unaccounted"):
        assert local[key] == on_ray[key]
    assert local["unaccounted"] == 0 and local["repo_samples"] == 2


def slurm_partition() -> str | None:
    """The default partition of a reachable Slurm cluster (CI's .ci/start-slurm starts one), or None."""
    if shutil.which("sinfo") is None:
        return None
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    up = [line.split() for line in done.stdout.splitlines() if line.split()[1:] and line.split()[1] in
          ("idle", "mixed", "allocated")] if done.returncode == 0 else []
    return up[0][0].rstrip("*") if up else None


@pytest.mark.skipif(slurm_partition() is None, reason="no Slurm cluster with an idle node (.ci/start-slurm starts one)")
def test_slurm_executor_gives_the_same_output_as_local(tmp_path):
    """datatrove's Slurm executor through `curate` with `executor.kind = "slurm"`: sbatch jobs, one per
    stage, each depending on the one before; the output equals the local executor's."""
    source = make_corpus(tmp_path)
    local = curate(CurateConfig(str(tmp_path / "local"), [source], workers=2, quiet=True))
    slurm = CurateExecutorConfig(kind="slurm", slurm_partition=slurm_partition(), slurm_time="00:30:00",
                                 slurm_mem_per_cpu_gb=1, slurm_venv_path=str(Path(sys.prefix) / "bin/activate"))
    assert curate(CurateConfig(str(tmp_path / "slurm"), [source], workers=2, quiet=True,
                               executor=slurm)) is None  # submitted
    stats_file, deadline = tmp_path / "slurm" / "stats.json", time.monotonic() + 900
    while not stats_file.exists():
        names = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout.split()
        queued = "\n".join(n for n in names if n.startswith("curate_"))
        logs = sorted((tmp_path / "slurm" / "_work" / "logs").rglob("*.out"))
        assert queued.strip() or stats_file.exists(), "the Slurm jobs ended without stats.json: " + "".join(
            p.read_text()[-2000:] for p in logs[-2:])
        assert time.monotonic() < deadline, f"Slurm jobs still queued after 15 minutes:\n{queued}"
        time.sleep(2)
    on_slurm = json.loads(stats_file.read_text())
    assert snapshot(tmp_path / "local") == snapshot(tmp_path / "slurm")
    for key in ("documents_in", "kept", "dropped", "by_step", "unaccounted"):
        assert local[key] == on_slurm[key]


def test_slurm_executors_are_built_with_the_right_arguments(tmp_path):
    from datatrove.executor import SlurmPipelineExecutor

    units = plan_units([make_corpus(tmp_path)])
    stages = build_stages(units, str(tmp_path / "out"), CurateConfig(str(tmp_path / "out")), 4, {})
    cfg = ExecutorConfig(
        slurm_partition="cpu", slurm_time="01:00:00", slurm_cpus_per_task=2, slurm_mem_per_cpu_gb=3
    )
    executors = build_executors(stages, "slurm", 16, str(tmp_path / "logs"), cfg)
    assert all(isinstance(e, SlurmPipelineExecutor) for e in executors)
    assert [e.tasks for e in executors] == [4, 11, 1, 1, 4, 1]  # a task per band: 8 word + 3 renamed
    assert [e.job_name for e in executors] == [
        "curate_filter",
        "curate_minhash_buckets",
        "curate_minhash_clusters",
        "curate_choose_kept",
        "curate_write",
        "curate_funnel",
    ]
    first = executors[0]
    assert (first.partition, first.time, first.cpus_per_task, first.mem_per_cpu_gb) == (
        "cpu",
        "01:00:00",
        2,
        3,
    )
    assert first.depends is None and all(
        e.depends is p for p, e in zip(executors, executors[1:], strict=False)
    )
    with pytest.raises(LingcoderError, match="partition"):
        build_executors(stages, "slurm", 16, str(tmp_path / "logs"), ExecutorConfig())
    with pytest.raises(LingcoderError, match="expected local, ray or slurm"):
        build_executors(stages, "spark", 16, str(tmp_path / "logs"), cfg)
