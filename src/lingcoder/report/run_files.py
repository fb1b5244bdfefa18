"""Reading a run directory for the report: each stage's files parsed and checked (no torch: the
files training leaves come through `lingcoder.runfiles`, expert usage is read from its JSON).

Every reader returns None (or an empty list) when its stage did not run, and raises a
`LingcoderError` naming the file when a file is there but malformed. The layout is the one
`lingcoder recipe` writes (curated/, tokens/, pretrain/, sft/, dpo/, eval/, experiment/,
expert_usage.json, recipe.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lingcoder.data.quality import QualityConfig
from lingcoder.errors import LingcoderError
from lingcoder.jsonl import JsonlReader
from lingcoder.runfiles import EXPERT_USAGE, METRICS, read_metrics, read_parquet_rows

STATS_KEYS = ("documents_in", "bytes_in", "kept", "dropped", "unaccounted", "high_quality", "low_quality",
              "by_step", "by_language")
SUMMARY_KEYS = ("benchmark", "k", "pass_at_k", "per_language")
RESULT_KEYS = ("task_id", "language", "passed", "verdict")


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or a LingcoderError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LingcoderError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LingcoderError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """The JSON objects of a JSONL file, each checked for the `required` keys."""
    rows = []
    for line in JsonlReader(path):
        require(line.value, required, line.where)
        rows.append(line.value)
    return rows


def require(data: dict, keys: tuple[str, ...], where: str | Path) -> None:
    if not isinstance(data, dict):
        raise LingcoderError(f"{where}: expected a JSON object, found {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise LingcoderError(f"{where}: missing {', '.join(missing)}")


def load_recipe(run: Path) -> dict | None:
    """RUN/recipe.json: {"config": ..., "stages": {name: {"seconds", "outputs", "finished_at"}}}."""
    path = run / "recipe.json"
    if not path.is_file():
        return None
    recipe = read_json(path)
    stages = recipe.get("stages", {})
    if not isinstance(stages, dict) or not all(isinstance(s, dict) for s in stages.values()):
        raise LingcoderError(f"{path}: `stages` must map each stage name to an object")
    return recipe


@dataclass
class Curation:
    stats: dict  # curated/stats.json (see lingcoder.data.funnel)
    kept: list[dict]  # language, size_bytes, score, quality ("high" | "low") of each file-level sample
    dropped: list[dict]  # language, size_bytes, step, reason of each dropped document
    threshold: float  # the high-quality score threshold
    threshold_source: str  # where the threshold came from


def load_curation(run: Path, recipe: dict | None) -> Curation | None:
    curated = run / "curated"
    stats_path = curated / "stats.json"
    if not stats_path.is_file():
        return None
    stats = read_json(stats_path)
    require(stats, STATS_KEYS, stats_path)
    kept = []
    for quality in ("high", "low"):
        for row in read_parquet_rows(curated / "file" / quality, ["language", "size_bytes", "score"]):
            kept.append({**row, "quality": quality})
    dropped = read_parquet_rows(curated / "dropped", ["language", "size_bytes", "step", "reason"])
    threshold = find_setting(recipe.get("config", {}) if recipe else {}, "high_quality_threshold")
    if threshold is None:
        return Curation(stats, kept, dropped, QualityConfig().high_quality_threshold, "default")
    return Curation(stats, kept, dropped, float(threshold), "recipe.json")


def find_setting(config, key: str):
    """The first value of `key` anywhere in a nested config dict (None if absent)."""
    if isinstance(config, dict):
        if key in config:
            return config[key]
        for value in config.values():
            found = find_setting(value, key)
            if found is not None:
                return found
    return None


def load_metrics(run: Path, stage: str) -> list[dict] | None:
    """RUN/<stage>/metrics.jsonl records (last record of each (kind, step) wins), or None."""
    path = run / stage / METRICS
    return read_metrics(path) if path.is_file() else None


USAGE_KEYS = ("checkpoint", "moe_layers", "num_experts", "languages", "selection", "key")


def load_expert_usage(run: Path) -> dict | None:
    """RUN/expert_usage.json (see lingcoder.expert_usage), checked for what the report draws, or None."""
    path = run / EXPERT_USAGE
    if not path.is_file():
        return None
    usage = read_json(path)
    require(usage, USAGE_KEYS, path)
    for language, entry in usage["languages"].items() if isinstance(usage["languages"], dict) else []:
        require(entry, ("documents", "tokens", "tokens_per_expert"), f"{path} [languages.{language}]")
    return usage


@dataclass
class EvalRun:
    directory: Path
    summary: dict  # summary.json (see lingcoder.evaluate.results)
    results: list[dict]  # results.jsonl rows ([] when absent)


def load_evals(run: Path) -> list[EvalRun]:
    """Every evaluation under RUN/eval: RUN/eval itself and/or one sub-directory per benchmark."""
    root = run / "eval"
    runs = []
    for path in sorted(root.rglob("summary.json")) if root.is_dir() else []:
        summary = read_json(path)
        if "per_benchmark" in summary:
            continue  # several benchmarks' combined table: each one's own summary is read from its sub-directory
        require(summary, SUMMARY_KEYS, path)
        results_path = path.parent / "results.jsonl"
        results = read_jsonl(results_path, RESULT_KEYS) if results_path.is_file() else []
        runs.append(EvalRun(path.parent, summary, results))
    return runs


STUDY_KEYS = ("study", "kind", "tokens", "steps", "seeds", "metrics", "baseline", "arms", "runs")


def load_experiment(run: Path) -> dict | None:
    """RUN/experiment/results.json ({study: entry}, see lingcoder.experiment), every study checked for the
    fields the report shows, or None."""
    path = run / "experiment" / "results.json"
    if not path.is_file():
        return None
    results = read_json(path)
    for key, entry in results.items():
        where = f"{path} [{key}]"
        if isinstance(entry, dict) and "study" not in entry:
            raise LingcoderError(f"{where}: not a study's results (an older format?); rerun "
                                 f"`lingcoder experiment RUN --study NAME`")
        require(entry, STUDY_KEYS, where)
        if not isinstance(entry["runs"], list) or not isinstance(entry["arms"], list):
            raise LingcoderError(f"{where}: runs and arms must be lists")
        if not isinstance(entry["metrics"], list) or not entry["metrics"]:
            raise LingcoderError(f"{where}: metrics must be a non-empty list")
        for i, arm in enumerate(entry["arms"]):
            require(arm, ("name",), f"{where}.arms[{i}]")
        for i, row in enumerate(entry["runs"]):
            require(row, ("arm", "seed", "val_curve", *entry["metrics"]), f"{where}.runs[{i}]")
            curve = row["val_curve"]
            if not isinstance(curve, list) or not all(isinstance(p, list) and len(p) == 2 for p in curve):
                raise LingcoderError(f"{where}.runs[{i}]: val_curve must be a list of [tokens, loss]")
            load = row.get("expert_load")
            if load is not None and not (isinstance(load, list) and all(isinstance(x, list) for x in load)):
                raise LingcoderError(f"{where}.runs[{i}]: expert_load must be a list (one per MoE layer) of lists")
    return results
