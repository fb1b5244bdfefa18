"""The files of a run read without torch: what training stages leave in their output directory
(metrics records, complete checkpoints) and the curated Parquet. Training writes them; training (to
resume), the recipe, experiments, expert usage and the report read them through this module.

    OUT/metrics.jsonl                  one JSON object per record: {"kind": "train"|"val", "step", ...}
    OUT/checkpoints/step-00000042/     a complete checkpoint: HF files plus train_state.pt
    OUT/checkpoints/step-00000050.tmp/ one being written (ignored; renamed when complete)

A run directory of `lingcoder recipe` holds one OUT per training stage (pretrain/, sft/, dpo/) and
`expert_usage.json`, which `lingcoder expert-usage` computes from the final checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lingcoder.errors import LingcoderError
from lingcoder.jsonl import JsonlReader
from lingcoder.model.config import BailingMoeConfig

TRAINING_STAGES = ("pretrain", "sft", "dpo")  # in the order a recipe runs them
STEP_DIR = re.compile(r"step-(\d{8})")
TRAIN_STATE = "train_state.pt"
METRICS = "metrics.jsonl"
EXPERT_USAGE = "expert_usage.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def complete_checkpoints(root: Path) -> list[Path]:
    """The complete checkpoints under `root` (a stage's checkpoints/ folder), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.fullmatch(p.name) and (p / TRAIN_STATE).is_file()]
    return sorted(found)


def final_checkpoint(run: Path) -> Path | None:
    """The last complete checkpoint of the last training stage of run directory `run` that wrote one."""
    for stage in reversed(TRAINING_STAGES):
        found = complete_checkpoints(run / stage / "checkpoints")
        if found:
            return found[-1]
    return None


def no_expert_usage_reason(run: Path) -> str | None:
    """Why `lingcoder expert-usage` has nothing to count in run directory `run`, or None when it has."""
    checkpoint = final_checkpoint(run)
    if checkpoint is None:
        return "no complete checkpoint under pretrain/, sft/ or dpo/."
    if not any((run / "curated" / "file").rglob("*.parquet")):
        return "no curated file-level documents (curated/file/) to run it on."
    config = BailingMoeConfig.load(checkpoint)
    if not any(map(config.is_moe_layer, range(config.num_hidden_layers))):
        return f"{checkpoint.relative_to(run)} is a dense model: it has no experts."
    return None


def weights_signature(checkpoint: Path) -> list[list]:
    """[name, size, mtime_ns] of each safetensors file: changes whenever the weights are rewritten."""
    weights = sorted(p for p in checkpoint.iterdir() if p.suffix == ".safetensors")
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in weights]


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl; for a resumed run, the last record of each (kind, step) wins.

    A line that is not a JSON object is an error naming `file:line`; a record without an integer
    `step` (or with a `kind` that is not a string) is an error naming the file.
    """
    records: dict[tuple, dict] = {}
    for line in JsonlReader(path):
        record = line.value
        step, kind = record.get("step"), record.get("kind")
        if not isinstance(step, int) or isinstance(step, bool) or not (kind is None or isinstance(kind, str)):
            raise LingcoderError(f"{path}: not a metrics file (line {line.lineno}: `step` must be an integer "
                                 f"and `kind` a string, got {step!r} and {kind!r})")
        records[(kind, step)] = record
    return sorted(records.values(), key=lambda r: (r["step"], r.get("kind") or ""))


def read_parquet_rows(folder: Path, columns: list[str]) -> list[dict]:
    """Rows of every Parquet file under `folder` (sorted), only `columns`."""
    rows = []
    for path in sorted(folder.rglob("*.parquet")):
        try:
            rows.extend(pq.read_table(path, columns=columns).to_pylist())
        except (pa.ArrowException, OSError) as exc:
            raise LingcoderError(f"{path}: unreadable Parquet ({exc})") from None
    return rows
