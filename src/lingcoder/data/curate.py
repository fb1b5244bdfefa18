"""`lingcoder curate`: raw repositories -> curated, deduplicated, decontaminated documents.

The pipeline (docs/pipeline.md) as datatrove stages, run by datatrove's local, Ray or Slurm
executor (`executors.py`):

1. per file, `tasks` shards: read sources -> decode & size -> language -> rule filters -> PII &
   secrets -> decontamination -> quality signals & score -> dedup keys + MinHash signatures
   (and the shingle sets they came from);
2. MinHash LSH buckets; 3. MinHash clusters; 4. choose the kept copies of each duplicate group
   (members verified by their exact similarity to a kept copy);
5. per shard: drop duplicates -> file-level samples (high / low) -> repository samples;
6. the funnel: `stats.json`.

Output contract of `DIR` (later stages read it):
- `file/high/*.parquet`  file-level samples with score >= `quality.high_quality_threshold`;
- `file/low/*.parquet`   the other kept file-level samples (low quality, not lost);
- `repo/*.parquet`       one sample per repository, files in dependency order joined with
                         `<|repo_name|>{repo}\\n<|file_sep|>{path}\\n{content}\\n...`;
  all three with `outputs.SAMPLE_SCHEMA`: id, repo, path, language, content, size_bytes,
  stars, license, signals (JSON), score;
- `dropped/<step>/*.parquet` one row per dropped document: id, repo, path, language,
  size_bytes, step, reason, detail (steps: decode_size, language, rules, decontaminate, dedup;
  repo_sample for repositories without a sample);
- `stats.json` the funnel (funnel.py); `_work/` intermediate files and datatrove's logs
  (`_work/logs/<stage>/logs/task_*.log`; on the console only with `--verbose`).
Every input file is either in `file/` or in `dropped/` (`stats.json` `unaccounted` is 0).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster

from lingcoder.data.classifier import QualityClassifier
from lingcoder.data.decontaminate import DecontaminationConfig, Decontaminator
from lingcoder.data.dedup import (
    CodeMinhashSignature,
    DedupConfig,
    DedupKeyWriter,
    DuplicateFilter,
    DuplicateResolver,
    minhash_config,
)
from lingcoder.data.default_corpus import DefaultCorpus, default_units
from lingcoder.data.executors import ExecutorConfig, run_stages
from lingcoder.data.filters import DecodeSizeFilter, RuleThresholds, rule_filters
from lingcoder.data.funnel import FunnelReport, funnel_table
from lingcoder.data.language import LanguageFilter, LanguageRules
from lingcoder.data.outputs import (
    FileSampleWriter,
    PreparedReader,
    RepoSampleBuilder,
    prepared_writer,
    sample_writer,
)
from lingcoder.data.pii import PiiConfig, PiiRedactor
from lingcoder.data.quality import QualityAnnotator, QualityConfig
from lingcoder.data.sources import SourceReader, plan_units, split_document_files
from lingcoder.errors import LingcoderError

OUTPUT_ENTRIES = ("file", "repo", "dropped", "_work", "stats.json")


@dataclass
class CurateExecutorConfig(ExecutorConfig):
    """Which datatrove executor runs the stages (`--executor`), and its options."""

    kind: Literal["local", "ray", "slurm"] = "local"


@dataclass
class CurateConfig:
    """`lingcoder curate` (the recipe's `[curate]` table): what to read, where to write, and every
    threshold of the pipeline (`[curate.rules]`, `[curate.dedup]`, ... ; `--set curate.rules.x=...`)."""

    out: str  # output directory (layout: this module's docstring)
    sources: list[str] = field(default_factory=list)  # empty: the default corpus (stdlib and installed packages)
    workers: int = 0  # local worker processes; 0 = every core
    benchmarks: list[str] = field(default_factory=list)  # extra benchmark JSONL to decontaminate against
    classifier_data: str | None = None  # labelled JSONL (content, label) to train the quality classifier
    quiet: bool = False  # print only the funnel table
    verbose: bool = False  # also show datatrove's logs on the console (always in out/_work/logs)
    rules: RuleThresholds = field(default_factory=RuleThresholds)
    languages: LanguageRules = field(default_factory=LanguageRules)
    pii: PiiConfig = field(default_factory=PiiConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    default_corpus: DefaultCorpus = field(default_factory=DefaultCorpus)
    executor: CurateExecutorConfig = field(default_factory=CurateExecutorConfig)
    min_repo_files: int = 2


def prepare_output_dir(out: Path) -> None:
    """Create `out`; replace a previous curate output; refuse any other non-empty directory."""
    if out.exists() and not out.is_dir():
        raise LingcoderError(f"--out {out}: exists and is not a directory")
    if out.is_dir():
        entries = set(os.listdir(out))
        if entries and not entries <= set(OUTPUT_ENTRIES):
            raise LingcoderError(
                f"--out {out}: directory is not empty and is not a previous curate output "
                f"(unexpected: {', '.join(sorted(entries - set(OUTPUT_ENTRIES))[:3])})"
            )
        for name in entries:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def build_stages(units, out: str, config: CurateConfig, tasks: int, sources_info: dict) -> list[tuple]:
    """The six stages as (name, pipeline, tasks)."""
    work = f"{out}/_work"
    mh = minhash_config(config.dedup)
    per_file = [
        SourceReader(units, config.rules.max_file_bytes, counts_dir=f"{work}/inputs"),
        DecodeSizeFilter(out_dir=out),
        LanguageFilter(config.languages, out_dir=out),
        *rule_filters(config.rules, out),
        PiiRedactor(config.pii),
        Decontaminator(config.decontamination, out_dir=out),
        QualityAnnotator(config.quality),
        DedupKeyWriter(f"{work}/dedup_keys"),
        prepared_writer(f"{work}/prepared"),
        CodeMinhashSignature(f"{work}/minhash/signatures", f"{work}/minhash/shingles", config.dedup),
    ]
    finish = [
        PreparedReader(f"{work}/prepared"),
        DuplicateFilter(f"{work}/dedup/duplicates.parquet", out_dir=out),
        FileSampleWriter(out, config.quality.high_quality_threshold),
        RepoSampleBuilder(config.min_repo_files, out_dir=out),
        sample_writer(f"{out}/repo"),
    ]
    return [
        ("filter", per_file, tasks),
        (
            "minhash_buckets",
            [MinhashDedupBuckets(f"{work}/minhash/signatures", f"{work}/minhash/buckets", config=mh)],
            mh.num_buckets,
        ),
        (
            "minhash_clusters",
            [
                MinhashDedupCluster(
                    f"{work}/minhash/buckets", f"{work}/minhash/clusters", config=mh, save_cluster_id=True
                )
            ],
            1,
        ),
        (
            "choose_kept",
            [
                DuplicateResolver(
                    f"{work}/dedup_keys",
                    f"{work}/minhash/clusters",
                    f"{work}/minhash/shingles",
                    f"{work}/dedup/duplicates.parquet",
                    config.dedup.min_similarity,
                )
            ],
            1,
        ),
        ("write", finish, tasks),
        ("funnel", [FunnelReport(out, sources_info)], 1),
    ]


def curate(config: CurateConfig) -> dict | None:
    """Curate `config.sources` (default: this interpreter's stdlib and packages) into `config.out`;
    return stats.json.

    Prints the funnel table at the end, and unless `quiet` a one-line summary. datatrove's logs
    (each task's start, progress and statistics) go to the log files under `out/_work/logs/`;
    `verbose` also shows them on the console. With `executor.kind = "slurm"` the jobs are submitted
    and None is returned (stats.json appears when the last job finishes).
    """
    cfg = copy.deepcopy(config)  # the benchmarks and the trained classifier are filled in below
    cfg.decontamination.benchmark_files += cfg.benchmarks
    for path in cfg.decontamination.benchmark_files:
        if not os.path.isfile(path):
            raise LingcoderError(f"benchmark {path}: no such file")
    units, sources_info = _plan(cfg.sources, cfg)
    out_path = Path(cfg.out).resolve()
    prepare_output_dir(out_path)
    out = str(out_path)
    if cfg.classifier_data:
        model = f"{out}/_work/quality_classifier.npz"
        os.makedirs(os.path.dirname(model), exist_ok=True)
        QualityClassifier.train(cfg.classifier_data).save(model)
        cfg.quality.classifier_path = model
    workers = cfg.workers or os.cpu_count() or 1
    units = split_document_files(units, workers)  # a lone JSONL or Parquet file still keeps every worker busy
    tasks = max(1, min(len(units), 4 * workers))  # several per worker: uneven repositories balance out
    stages = build_stages(units, out, cfg, tasks, sources_info)
    started = time.monotonic()
    submitted = run_stages(stages, cfg.executor.kind, workers, f"{out}/_work/logs", cfg.executor,
                           quiet=not cfg.verbose)
    if not submitted:
        return None
    stats = json.loads((out_path / "stats.json").read_text())
    stats["seconds"] = round(time.monotonic() - started, 2)
    (out_path / "stats.json").write_text(json.dumps(stats, indent=2))
    print(funnel_table(stats))
    if not cfg.quiet:
        print(f"curated {stats['documents_in']:,} files in {stats['seconds']:.1f}s -> {out}")
    return stats


def raw_corpus(config: CurateConfig) -> int:
    """The uncurated twin of `curate` (for the curated-vs-raw experiment): every file of `config.sources`
    the readers can decode whose language is known, as-is (no rules, PII redaction, decontamination, dedup
    or quality split), written to `config.out/raw/` in the curated schema, always by local processes.
    Returns the number of documents written."""
    import pyarrow.parquet as pq

    units, _ = _plan(config.sources, config)
    out_path = Path(config.out).resolve()
    shutil.rmtree(out_path, ignore_errors=True)
    out_path.mkdir(parents=True)
    steps = [SourceReader(units, config.rules.max_file_bytes), DecodeSizeFilter(out_dir=str(out_path)),
             LanguageFilter(config.languages, out_dir=str(out_path)), sample_writer(f"{out_path}/raw")]
    workers = config.workers or os.cpu_count() or 1
    tasks = max(1, min(len(units), 4 * workers))
    run_stages([("raw", steps, tasks)], "local", workers, f"{out_path}/_work/logs", config.executor,
               quiet=not config.verbose)
    return sum(pq.ParquetFile(path).metadata.num_rows for path in (out_path / "raw").glob("*.parquet"))


def _plan(sources: list[str], cfg: CurateConfig) -> tuple[list, dict]:
    """The units to read (given sources, or the default corpus) and how they were chosen."""
    if sources:
        units, sources_info = plan_units(sources), {"given": list(sources)}
    else:
        units, skipped = default_units(cfg.default_corpus)
        sources_info = {"default_corpus": True, "repositories": len(units), "skipped": skipped}
    if not units:
        raise LingcoderError("no repositories or document files found in the given sources")
    return units, sources_info
