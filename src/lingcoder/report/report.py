"""`lingcoder report RUN_DIR`: the run directory's report.html, every section drawn from the
files its stages wrote (see sections.py), each one optional. Building it imports no torch."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.report import sections
from lingcoder.report.page import render_page
from lingcoder.report.run_files import load_metrics, load_recipe
from lingcoder.runfiles import TRAINING_STAGES


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of `run_dir` to `out` (default RUN_DIR/report.html) and return its path. It only
    reads files (no torch, no model run); expert usage comes from `lingcoder expert-usage`'s JSON."""
    run = Path(run_dir)
    if not run.is_dir():
        raise LingcoderError(f"{run_dir}: no such run directory")
    recipe = load_recipe(run)
    metrics = {stage: load_metrics(run, stage) for stage in TRAINING_STAGES}
    parts = [
        sections.curation_section(run, recipe),
        sections.training_section(run, metrics),
        sections.expert_load_section(run, metrics),
        sections.expert_usage_section(run),
        sections.evaluation_section(run),
        sections.model_card_section(run, recipe, metrics),
        sections.experiment_section(run),
    ]
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    page = render_page(f"lingcoder run: {run.resolve().name}", f"{run.resolve()} - written {now}", parts)
    path = Path(out) if out else run / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
