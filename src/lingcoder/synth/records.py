"""Outputs: Ling-format records, the drop log and the funnel (`stats.json`).

- `sft.jsonl`: `{"mid", "messages": [{"role": "HUMAN", ...}, {"role": "ASSISTANT", ...}], "tags",
  "languages"}` (Ling-Coder-SFT), plus `origin` (where the sample came from) and `tests` (the
  test code its answer passed).
- `dpo.jsonl`: `{"mid", "prompt", "chosen", "rejected"}` (Ling-Coder-DPO), plus `source`
  (`mutation` or `model`), `rejected_verdict` and the source's details (`mutation`, `mutation_line`;
  `model`, `chosen_from`, `answers`, `answers_passed`).
- `dropped.jsonl`: one line per candidate that did not become data: kind, where, stage, reason, detail.
- `stats.json`: per kind (`mined`, `magpie`, `evolved`): seen, kept, dropped by stage and reason,
  unaccounted (seen - kept - dropped, 0 by construction and checked); the combined funnel in stage
  order; documents; teacher requests and parse failures; DPO pairs by source and problems without one.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lingcoder.synth.preference import Pair
from lingcoder.synth.samples import KINDS, Drop, Sample

STAGES = ("mine", "teacher", "dedup", "decontaminate", "limit", "verify")


def sft_record(sample: Sample) -> dict:
    return {
        "mid": sample.mid,
        "messages": [{"role": "HUMAN", "content": sample.prompt}, {"role": "ASSISTANT", "content": sample.answer}],
        "tags": list(sample.tags),
        "languages": [sample.language],
        "origin": sample.origin.where,
        "tests": sample.tests,
    }


def dpo_record(pair: Pair) -> dict:
    return {
        "mid": f"{pair.sample.mid}-dpo",
        "prompt": pair.sample.prompt,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "source": pair.source,
        "rejected_verdict": pair.rejected_verdict,
        **pair.details,
    }


def write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class Funnel:
    """Counts candidates in, keeps the drops, and turns them into the funnel of `stats.json`."""

    def __init__(self) -> None:
        self.seen: Counter = Counter()
        self.kept: Counter = Counter()
        self.drops: list[Drop] = []

    def add(self, seen: dict[str, int], drops: list[Drop]) -> None:
        self.seen.update(seen)
        self.drops += drops

    def keep(self, samples: list[Sample]) -> None:
        self.kept.update(s.origin.kind for s in samples)

    def stats(self) -> dict:
        by_kind = {}
        for kind in [k for k in KINDS if self.seen[k]]:
            dropped: dict = defaultdict(Counter)
            for drop in self.drops:
                if drop.origin.kind == kind and drop.stage in STAGES:
                    dropped[drop.stage][drop.reason] += 1
            total = sum(sum(c.values()) for c in dropped.values())
            by_kind[kind] = {
                "seen": self.seen[kind], "kept": self.kept[kind],
                "dropped": {stage: dict(sorted(dropped[stage].items())) for stage in STAGES if stage in dropped},
                "unaccounted": self.seen[kind] - self.kept[kind] - total,
            }
        remaining = sum(self.seen.values())
        funnel = [{"stage": "candidates", "remaining": remaining}]
        for stage in STAGES:
            count = sum(1 for d in self.drops if d.stage == stage)
            remaining -= count
            funnel.append({"stage": stage, "dropped": count, "remaining": remaining})
        return {"samples": by_kind, "funnel": funnel}

    def write_drops(self, path: Path) -> None:
        write_jsonl(path, [{"kind": d.origin.kind, "where": d.origin.where, "stage": d.stage, "reason": d.reason,
                            "detail": d.detail} for d in self.drops])


def print_summary(stats: dict, console: Console) -> None:
    """The funnel and the outputs, as a table."""
    table = Table(title=f"lingcoder synth -> {stats['out']}", show_header=True)
    table.add_column("stage")
    table.add_column("dropped", justify="right")
    table.add_column("remaining", justify="right")
    table.add_column("top reasons")
    reasons: dict = defaultdict(Counter)
    for kind in stats["samples"].values():
        for stage, counts in kind["dropped"].items():
            reasons[stage].update(counts)
    for row in stats["funnel"]:
        top = ", ".join(f"{r} {n:,}" for r, n in reasons[row["stage"]].most_common(3))
        table.add_row(row["stage"], f"{row.get('dropped', 0):,}", f"{row['remaining']:,}", top)
    console.print(table)
    dpo = stats["dpo"]
    console.print(f"SFT records: {stats['sft_records']:,}; DPO pairs: {dpo['pairs']:,} "
                  f"({', '.join(f'{k} {v}' for k, v in dpo['by_source'].items()) or 'none'}); "
                  f"unaccounted: {sum(k['unaccounted'] for k in stats['samples'].values())}")
