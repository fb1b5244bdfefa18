"""The funnel: `stats.json` and the table printed at the end of `lingcoder curate`.

`stats.json` keys: `documents_in`, `bytes_in` (what the readers yielded), `kept` / `dropped`
(documents and bytes), `unaccounted` (documents in minus kept minus dropped; 0 unless a worker
died), `high_quality`, `low_quality`, `repo_samples`, `repo_samples_dropped`, `by_step`
(step -> reason -> {documents, bytes}, in pipeline order), `by_language` (language ->
{in, kept, dropped, kept_bytes}), `pii_redacted` (kind -> count in kept files),
`decontamination` (benchmark item -> [repo/path of each dropped document]), `sources`.
"""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep

STEP_ORDER = ["decode_size", "language", "rules", "decontaminate", "dedup", "repo_sample"]


def _rows(folder: str, columns: list[str]) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(f"{folder}/**/*.parquet", recursive=True)):
        rows.extend(pq.read_table(path, columns=columns).to_pylist())
    return rows


def compute_funnel(out_dir: str, sources: dict) -> dict:
    inputs = [json.loads(Path(p).read_text()) for p in sorted(glob.glob(f"{out_dir}/_work/inputs/*.json"))]
    docs_in, bytes_in = sum(i["documents"] for i in inputs), sum(i["bytes"] for i in inputs)
    dropped = _rows(
        f"{out_dir}/dropped", ["repo", "path", "language", "size_bytes", "step", "reason", "detail"]
    )
    file_drops = [r for r in dropped if r["step"] != "repo_sample"]
    columns = ["language", "size_bytes", "signals"]
    high, low = _rows(f"{out_dir}/file/high", columns), _rows(f"{out_dir}/file/low", columns)
    repo_samples = _rows(f"{out_dir}/repo", ["repo"])

    by_step: dict = defaultdict(lambda: defaultdict(lambda: {"documents": 0, "bytes": 0}))
    by_language: dict = defaultdict(lambda: {"in": 0, "kept": 0, "dropped": 0, "kept_bytes": 0})
    decontamination: dict = defaultdict(list)
    for row in dropped:
        cell = by_step[row["step"]][row["reason"]]
        cell["documents"] += 1
        cell["bytes"] += row["size_bytes"]
        if row["step"] == "repo_sample":
            continue
        by_language[row["language"]]["in"] += 1
        by_language[row["language"]]["dropped"] += 1
        if row["step"] == "decontaminate":
            for item in row["detail"].split(", "):
                decontamination[item].append(f"{row['repo']}/{row['path']}")
    pii: dict = defaultdict(int)
    for row in high + low:
        lang = by_language[row["language"]]
        lang["in"] += 1
        lang["kept"] += 1
        lang["kept_bytes"] += row["size_bytes"]
        for kind, n in json.loads(row["signals"]).get("pii", {}).items():
            pii[kind] += n
    kept = len(high) + len(low)
    order = {s: i for i, s in enumerate(STEP_ORDER)}
    return {
        "documents_in": docs_in,
        "bytes_in": bytes_in,
        "kept": {"documents": kept, "bytes": sum(r["size_bytes"] for r in high + low)},
        "dropped": {"documents": len(file_drops), "bytes": sum(r["size_bytes"] for r in file_drops)},
        "unaccounted": docs_in - kept - len(file_drops),
        "high_quality": len(high),
        "low_quality": len(low),
        "repo_samples": len(repo_samples),
        "repo_samples_dropped": len(dropped) - len(file_drops),
        "by_step": {
            s: dict(sorted(by_step[s].items(), key=lambda kv: -kv[1]["documents"]))
            for s in sorted(by_step, key=lambda s: order.get(s, 99))
        },
        "by_language": dict(sorted(by_language.items(), key=lambda kv: -kv[1]["in"])),
        "pii_redacted": dict(pii),
        "decontamination": dict(decontamination),
        "sources": sources,
    }


def funnel_table(stats: dict) -> str:
    """A short human-readable funnel."""
    mib = lambda n: f"{n / 2**20:,.1f} MiB"
    lines = [f"{'documents in':<34}{stats['documents_in']:>9,}  {mib(stats['bytes_in']):>12}"]
    for step, reasons in stats["by_step"].items():
        if step == "repo_sample":
            continue
        total = sum(c["documents"] for c in reasons.values())
        total_bytes = sum(c["bytes"] for c in reasons.values())
        lines.append(f"  - {step:<30}{total:>9,}  {mib(total_bytes):>12}")
        for reason, cell in list(reasons.items())[:6]:
            lines.append(f"      {reason:<28}{cell['documents']:>9,}")
    lines.append(f"{'kept':<34}{stats['kept']['documents']:>9,}  {mib(stats['kept']['bytes']):>12}")
    lines.append(f"  high quality / low quality       {stats['high_quality']:,} / {stats['low_quality']:,}")
    lines.append(f"  repository samples               {stats['repo_samples']:,}")
    lines.append(f"  unaccounted                      {stats['unaccounted']}")
    return "\n".join(lines)


class FunnelReport(PipelineStep):
    """Last stage (one task): writes `stats.json` from the outputs and the drop log."""

    type = "📊 - STATS"
    name = "📊 funnel"

    def __init__(self, out_dir: str, sources: dict):
        super().__init__()
        self.out_dir, self.sources = out_dir, sources

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        stats = compute_funnel(self.out_dir, self.sources)
        tmp = f"{self.out_dir}/stats.json.tmp"
        with open(tmp, "w") as fh:
            json.dump(stats, fh, indent=2)
        os.replace(tmp, f"{self.out_dir}/stats.json")
        return iter(())
