"""The results files of `lingcoder eval` and the printed table.

`DIR/results.jsonl`: one row per sample, in the samples file's order:
    {"sample": 0, "line": 1, "task_id": "HumanEval/0", "completion_id": 0, "language": "python",
     "passed": true, "verdict": "passed", "seconds": 0.104, "error": "", "digest": "3f1c..."}
  `sample` is the 0-based index among the samples, `line` its line in the samples file,
  `completion_id` its 0-based rank among the samples of the same task, `verdict` one of
  passed / failed / timeout / error / skipped, `seconds` the run's wall time (build excluded),
  `error` a short reason (at most 300 characters), `digest` a hash of task_id and completion
  (to resume safely). While a run is in progress rows are appended as they finish; at the end
  the file is rewritten in input order.

`DIR/summary.json`: {"benchmark", "samples_file", "n_samples", "n_tasks", "k",
    "pass_at_k": {benchmark: {language: {"pass@1": float|null, ...}}},
    "per_language": {language: {"tasks", "samples", "passed", "failed", "timeout", "error", "skipped"}},
    "skipped": {language: reason}, "toolchains": {language: version}, "isolation": {...},
    "timeouts": {"mode": "adaptive"|"fixed"|"benchmark" (the benchmark's own limits), ...}, "finished_at",
    "generation": {benchmark, backend, model, base_url, mode, settings} when eval generated the samples}.
  pass@k is the mean over tasks of the unbiased estimator, over the samples that were judged
  (skipped samples excluded); null when some task has fewer than k samples.
  "benchmark_pass_at_k": {benchmark: {"pass@1": ...}} is the same over all of its tasks, every
  language together.

With several benchmarks, each has the files above in DIR/<benchmark>/ and DIR/summary.json is
`combine`'s: {"benchmarks": [...], "k", "pass_at_k": {benchmark: {language: {...}}},
"benchmark_pass_at_k": {benchmark: {...}}, "per_benchmark": {benchmark: per_language counts},
"dirs": {benchmark: sub-directory}, "finished_at"} -- the benchmark x language table.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.execution import VERDICTS
from lingcoder.evaluate.passk import mean_pass_at_k
from lingcoder.jsonl import JsonlReader

RESULTS = "results.jsonl"
SUMMARY = "summary.json"


def read_results(out_dir: Path) -> dict[int, dict]:
    path = out_dir / RESULTS
    rows: dict[int, dict] = {}
    if not path.exists():
        return rows
    # A half-written last line from an interrupted run is left out: that sample is judged again.
    reader = JsonlReader(path, on_error="skip", partial_last_line="ignore")
    for line in reader:
        try:
            rows[int(line.value["sample"])] = line.value
        except (KeyError, TypeError, ValueError):
            raise LingcoderError(f"{line.where}: not a results row; use a fresh --out") from None
    if reader.skipped:
        raise LingcoderError(f"{reader.skipped[0].where}: not a results row; use a fresh --out")
    return rows


def append_result(handle, row: dict) -> None:
    handle.write(json.dumps(row) + "\n")
    handle.flush()


def write_results(out_dir: Path, rows: list[dict]) -> None:
    tmp = out_dir / (RESULTS + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    os.replace(tmp, out_dir / RESULTS)


def summarize(rows: list[dict], benchmark: str, ks: list[int]) -> tuple[dict, dict]:
    """(pass_at_k nested by benchmark and language, per-language verdict counts)."""
    per_task: dict[str, dict[str, list[bool]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        lang = row["language"]
        stats = counts.setdefault(lang, {"tasks": 0, "samples": 0, **dict.fromkeys(VERDICTS, 0)})
        stats["samples"] += 1
        stats[row["verdict"]] += 1
        tasks = per_task.setdefault(lang, {})
        if row["task_id"] not in tasks:
            stats["tasks"] += 1
            tasks[row["task_id"]] = []
        if row["verdict"] != "skipped":
            tasks[row["task_id"]].append(row["passed"])
    pass_at = {}
    for lang, tasks in per_task.items():
        judged = [(len(v), sum(v)) for v in tasks.values() if v]
        pass_at[lang] = {f"pass@{k}": mean_pass_at_k(judged, k) for k in ks}
    return {benchmark: pass_at}, counts


def benchmark_pass_at_k(rows: list[dict], ks: list[int]) -> dict[str, float | None]:
    """pass@k over every task of the rows, whatever its language (skipped samples excluded)."""
    per_task: dict[tuple[str, str], list[bool]] = {}
    for row in rows:
        if row["verdict"] != "skipped":
            per_task.setdefault((row["language"], row["task_id"]), []).append(row["passed"])
    judged = [(len(v), sum(v)) for v in per_task.values()]
    return {f"pass@{k}": mean_pass_at_k(judged, k) for k in ks}


def combine(summaries: dict[str, dict], dirs: dict[str, str]) -> dict:
    """One summary of several benchmarks' summaries (each from its own sub-directory)."""
    ks = sorted({int(k) for s in summaries.values() for k in s["k"]})
    return {
        "benchmark": "+".join(summaries),
        "benchmarks": list(summaries),
        "k": ks,
        "n_samples": sum(s["n_samples"] for s in summaries.values()),
        "pass_at_k": {name: s["pass_at_k"][name] for name, s in summaries.items()},
        "benchmark_pass_at_k": {n: s.get("benchmark_pass_at_k", {}).get(n, {}) for n, s in summaries.items()},
        "per_benchmark": {name: s["per_language"] for name, s in summaries.items()},
        "skipped": {
            f"{name}/{lang}": why for name, s in summaries.items() for lang, why in s.get("skipped", {}).items()
        },
        "dirs": dirs,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_benchmark_table(summary: dict, console: Console) -> None:
    """The paper-style table: one row per benchmark, one column per language, pass@(smallest k) in %."""
    k = summary["k"][0]
    languages = sorted({lang for by_lang in summary["pass_at_k"].values() for lang in by_lang})
    table = Table(title=f"lingcoder eval: pass@{k} (%) per benchmark and language")
    for column in ["benchmark", *languages, f"all (pass@{k})"]:
        table.add_column(column, justify="left" if column == "benchmark" else "right")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    for bench, by_lang in summary["pass_at_k"].items():
        overall = summary.get("benchmark_pass_at_k", {}).get(bench, {}).get(f"pass@{k}")
        table.add_row(
            bench, *[cell(by_lang[lang][f"pass@{k}"]) if lang in by_lang else "" for lang in languages], cell(overall)
        )
    console.print(table)


def write_summary(out_dir: Path, summary: dict) -> None:
    tmp = out_dir / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out_dir / SUMMARY)


def print_table(summary: dict, console: Console) -> None:
    ks = summary["k"]
    table = Table(title=f"lingcoder eval: {summary['benchmark']} ({summary['n_samples']} samples)")
    for column in ["benchmark", "language", "tasks", "samples", *[f"pass@{k}" for k in ks], *VERDICTS]:
        table.add_column(column, justify="left" if column in ("benchmark", "language") else "right")
    for bench, languages in summary["pass_at_k"].items():
        for lang, scores in languages.items():
            stats = summary["per_language"][lang]
            cells = ["-" if scores[f"pass@{k}"] is None else f"{100 * scores[f'pass@{k}']:.2f}" for k in ks]
            table.add_row(
                bench,
                lang,
                str(stats["tasks"]),
                str(stats["samples"]),
                *cells,
                *[str(stats[v]) for v in VERDICTS],
            )
    console.print(table)
    for lang, reason in summary.get("skipped", {}).items():
        console.print(f"[yellow]skipped {lang}:[/] {reason}")
