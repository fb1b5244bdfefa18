"""Runs the curation stages on datatrove's executors: local processes, a Ray cluster or Slurm.

We write no executor of our own: each stage becomes a datatrove executor that `depends` on
the previous one, exactly as datatrove's own multi-stage MinHash examples chain them.

Quiet by default: every task's datatrove log (DEBUG and up) goes to its file under
`LOGGING_DIR/<stage>/logs/`, and the console gets only warnings and errors. datatrove prints a
local task's INFO lines to the console when its local rank is 0 and resets the console logger
after each task, so `QuietLocalExecutor` runs its tasks as a non-zero local rank (datatrove's own
switch for a task that keeps its logs to its file) and turns the console back to warnings after
each task. What a task writes to stderr itself (datatrove's tqdm bars, Python warnings) goes to
`logs/task_NNNNN.stderr` beside its log. `quiet=False` (`--verbose`) keeps datatrove's console
logging. Ray workers' output stays on the workers and Slurm jobs log to their files.
"""

from __future__ import annotations

import logging
import sys
from contextlib import redirect_stderr
from dataclasses import dataclass

from datatrove.executor import LocalPipelineExecutor

from lingcoder.errors import LingcoderError


@dataclass
class ExecutorConfig:
    """Options for the executors: how local workers start, and the Ray and Slurm resources."""

    # "fork": workers start as copies of this process, its imports done (a fresh "forkserver" or
    # "spawn" worker imports datatrove, numpy, pyarrow and the grammars again, for each stage);
    # "" = fork on Linux, datatrove's default (forkserver) elsewhere.
    local_start_method: str = ""

    slurm_partition: str = ""
    slurm_time: str = "04:00:00"
    slurm_cpus_per_task: int = 1
    slurm_mem_per_cpu_gb: int = 2
    slurm_venv_path: str = ""
    ray_cpus_per_task: int = 1
    ray_mem_per_cpu_gb: float = 2.0


def _console_logging(quiet: bool) -> None:
    from datatrove.utils.logging import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING" if quiet else "INFO", format="{time:HH:mm:ss} | {message}")
    logging.getLogger("ray").setLevel(logging.WARNING)


class QuietLocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor whose tasks, unless `quiet` is off, log to their files only."""

    def __init__(self, *args, quiet: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.quiet = quiet

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        try:
            if not self.quiet:
                return super()._run_for_rank(rank, local_rank, node_rank)
            with self.logging_dir.open(f"logs/task_{rank:05d}.stderr", "w") as stderr, redirect_stderr(stderr):
                return super()._run_for_rank(rank, 1, node_rank)
        finally:
            _console_logging(self.quiet)


def build_executors(stages: list[tuple], kind: str, workers: int, logging_dir: str, cfg: ExecutorConfig,
                    quiet: bool = True):
    """One datatrove executor per stage, each depending on the one before; returns them in order."""
    executors = []
    previous = None
    for name, pipeline, tasks in stages:
        common = {
            "pipeline": pipeline,
            "tasks": tasks,
            "logging_dir": f"{logging_dir}/{name}",
            "depends": previous,
            "skip_completed": False,
        }
        if kind == "local":
            start = cfg.local_start_method or ("fork" if sys.platform == "linux" else "forkserver")
            executor = QuietLocalExecutor(workers=min(workers, tasks), quiet=quiet, start_method=start, **common)
        elif kind == "ray":
            try:
                from datatrove.executor import RayPipelineExecutor
            except ImportError:
                raise LingcoderError("--executor ray needs Ray: pip install 'lingcoder[ray]'") from None
            executor = RayPipelineExecutor(
                workers=min(workers, tasks),
                cpus_per_task=cfg.ray_cpus_per_task,
                mem_per_cpu_gb=cfg.ray_mem_per_cpu_gb,
                **common,
            )
        elif kind == "slurm":
            from datatrove.executor import SlurmPipelineExecutor

            if not cfg.slurm_partition:
                raise LingcoderError(
                    "--executor slurm needs a partition: --set curate.executor.slurm_partition=NAME "
                    "(tokenize: tokenize.executor_options.slurm_partition)"
                )
            executor = SlurmPipelineExecutor(
                job_name=f"curate_{name}",
                time=cfg.slurm_time,
                partition=cfg.slurm_partition,
                cpus_per_task=cfg.slurm_cpus_per_task,
                mem_per_cpu_gb=cfg.slurm_mem_per_cpu_gb,
                venv_path=cfg.slurm_venv_path or None,
                workers=workers,
                **common,
            )
        else:
            raise LingcoderError(f"--executor {kind}: expected local, ray or slurm")
        executors.append(executor)
        previous = executor
    return executors


def run_stages(
    stages, kind: str, workers: int, logging_dir: str, cfg: ExecutorConfig, quiet: bool = True
) -> bool:
    """Run (local, ray) or submit (slurm) all stages; True when they ran to completion here.

    `quiet`: datatrove's INFO logs go to the task log files under `logging_dir` only."""
    _console_logging(quiet)
    executors = build_executors(stages, kind, workers, logging_dir, cfg, quiet)
    if kind == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(
                num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
            )
    executors[-1].run()
    return kind != "slurm"
