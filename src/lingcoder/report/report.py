"""`lingcoder report RUN_DIR`: the run directory's report.html, every section drawn from the
files its stages wrote (see sections.py), each one optional."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.report import sections
from lingcoder.report.page import render_page
from lingcoder.report.run_files import TRAINING_STAGES, load_metrics, load_recipe


def write_report(run_dir: str | Path, out: str | Path | None = None, *, device: str = "cpu",
                 usage_documents: int = 32, usage_tokens: int = 512) -> Path:
    """Write the report of `run_dir` to `out` (default RUN_DIR/report.html) and return its path.

    `usage_documents` and `usage_tokens`: held-out documents per language, and tokens of each, that
    the final checkpoint runs on (on `device`) to count which experts each language uses.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise LingcoderError(f"{run_dir}: no such run directory")
    if usage_documents < 1 or usage_tokens < 1:
        raise LingcoderError(f"usage_documents and usage_tokens must be >= 1, got {usage_documents} and "
                             f"{usage_tokens}")
    recipe = load_recipe(run)
    metrics = {stage: load_metrics(run, stage) for stage in TRAINING_STAGES}
    parts = [
        sections.curation_section(run, recipe),
        sections.training_section(run, metrics),
        sections.expert_load_section(run, metrics),
        sections.expert_usage_section(run, usage_documents, usage_tokens, device),
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
