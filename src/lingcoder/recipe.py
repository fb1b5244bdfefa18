"""`lingcoder recipe CONFIG`: one command from raw repositories to an evaluated model, with a report.

The stages run in order, each writing its files into one run directory RUN:

    curate -> tokenizer -> tokenize -> pretrain -> synth -> sft -> dpo -> expert-usage -> eval -> report

`RUN/recipe.json` records, per stage, a fingerprint of what shaped its output (its own config tables
plus the fingerprint of the stage before it), its wall time and its outputs. A stage is skipped when
its fingerprint is unchanged and its outputs exist, so an interrupted recipe resumes at the first
unfinished stage (pretraining and SFT continue from their last checkpoint) and an edited config
reruns the stage it touches and every stage after it. Stages whose table is absent from the config
(`[synth]`, `[sft]`, `[dpo]`, `[eval]`) are left out. The report is rebuilt on every run.

One TOML file configures everything: `[run]` and the tables below belong to the recipe, `[curate]`
holds curation's settings (plus `sources`), and `[model]`, `[data]`, `[train]`, `[[phases]]`,
`[sft]`, `[dpo]` are the training stages' own tables (each stage reads the same file).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lingcoder.config import apply_overrides, from_dict, load_toml
from lingcoder.errors import LingcoderError
from lingcoder.runfiles import complete_checkpoints, no_expert_usage_reason
from lingcoder.train.config import pretrain_config_from_dict
from lingcoder.train.dpo import DPOConfig
from lingcoder.train.sft import SFTConfig

RECORD = "recipe.json"


@dataclass
class RunConfig:
    out: str = "runs/tiny"
    workers: int = 0  # processes for curation, tokenization and judging; 0 = every core


@dataclass
class TokenizeStageConfig:
    vocab_size: int = 0  # 0: the model's vocab_size
    fim_rate: float = 0.5
    val_fraction: float = 0.05
    seed: int = 0


@dataclass
class EvalStageConfig:
    benchmark: str = "humaneval"
    tasks: int = 0  # the benchmark's first N tasks; 0 = all
    mode: str = "instruct"  # instruct: chat template (a post-trained model); base: plain completion
    n: int = 1
    temperature: float = 0.0
    max_tokens: int = 256
    k: list[int] = field(default_factory=lambda: [1])
    backend: str = "checkpoint"  # checkpoint: lingcoder's own engine; vllm: vLLM's server on the model

    def __post_init__(self) -> None:
        if self.backend not in ("checkpoint", "vllm"):
            raise LingcoderError(f"eval.backend {self.backend!r}: unknown (known: checkpoint, vllm)")


@dataclass
class Run:
    """What every stage sees: the run directory, the whole config, and how the user overrode it."""

    dir: Path
    config_path: Path
    overrides: list[str]
    data: dict[str, Any]
    workers: int
    console: Console
    record: dict[str, Any]

    def table(self, name: str) -> dict[str, Any]:
        return dict(self.data.get(name, {}))

    def stage_outputs(self, stage: str) -> list[str]:
        return self.record["stages"].get(stage, {}).get("outputs", [])

    def last_model(self) -> str:
        """The newest checkpoint of the training stages that ran."""
        for stage in ("dpo", "sft", "pretrain"):
            if self.stage_outputs(stage):
                return self.stage_outputs(stage)[0]
        raise LingcoderError("no trained model in this run: the pretrain stage has not finished")


@dataclass(frozen=True)
class Stage:
    name: str
    shaped_by: Callable[[dict], Any]  # the part of the config that shapes its output (fingerprinted)
    run: Callable[[Run, bool], list[Path]]  # (run, resume) -> outputs; resume: continue a started stage
    needs_table: str | None = None  # left out when the config has no such table
    always: bool = False  # cheap and reads every other stage: rebuilt on every run
    check: Callable[[dict], Any] | None = None  # validates the stage's config before any stage runs


def _tables(*names: str) -> Callable[[dict], Any]:
    return lambda data: {name: data.get(name) for name in names}


def _curate(run: Run, resume: bool) -> list[Path]:
    from lingcoder.data.curate import curate

    settings = run.table("curate")
    sources = settings.pop("sources", [])
    curate(sources or None, str(run.dir / "curated"), workers=run.workers, config=settings, quiet=True)
    return [run.dir / "curated"]


def _tokenizer(run: Run, resume: bool) -> list[Path]:
    from lingcoder.data.tokenize import train_tokenizer_on_parquet

    report = train_tokenizer_on_parquet(run.dir / "curated", run.dir / "tokenizer", _vocab_size(run.data))
    run.console.print(f"{report['vocab_size']:,} tokens, lossless on {report['round_trip_ok']:,} documents")
    return [run.dir / "tokenizer"]


def _tokenize(run: Run, resume: bool) -> list[Path]:
    from lingcoder.data.fim import FimConfig
    from lingcoder.data.tokenize import tokenize

    cfg = from_dict(TokenizeStageConfig, run.table("tokenize"), where="tokenize")
    index = tokenize(run.dir / "curated", run.dir / "tokenizer", run.dir / "tokens",
                     fim=FimConfig(rate=cfg.fim_rate, seed=cfg.seed), val_fraction=cfg.val_fraction,
                     seed=cfg.seed, workers=run.workers)
    for name, entry in index["sources"].items():
        run.console.print(f"  {name}: {entry['train']['tokens']:,} train / {entry['val']['tokens']:,} val tokens")
    return [run.dir / "tokens"]


def _pretrain(run: Run, resume: bool) -> list[Path]:
    from lingcoder.train.config import load_pretrain_config
    from lingcoder.train.loop import pretrain

    out = run.dir / "pretrain"
    config = load_pretrain_config(run.config_path, [*run.overrides, f'data.tokens="{run.dir / "tokens"}"',
                                                    f'train.out="{out}"'])
    resume = resume and bool(complete_checkpoints(out / "checkpoints"))
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
    result = pretrain(config, resume=resume, console=run.console)
    run.console.print(f"validation loss {result.val_loss:.3f} vs unigram entropy {result.unigram_entropy:.3f} "
                      f"nats/token after {result.tokens:,} tokens")
    return [result.checkpoint]


def _synth(run: Run, resume: bool) -> list[Path]:
    from lingcoder.synth import synth

    out = run.dir / "synth"
    stats = synth(run.dir / "curated", out, workers=run.workers, **_synth_settings(run.data))
    run.console.print(f"{stats['sft_records']:,} verified SFT records, {stats['dpo']['pairs']:,} DPO pairs")
    return [out]


def _posttrain(stage: str):
    """The sft or dpo stage: its own table, with the run's data, starting model and output filled in."""

    def run_stage(run: Run, resume: bool) -> list[Path]:
        from lingcoder.train.dpo import dpo, load_dpo_config
        from lingcoder.train.sft import load_sft_config, sft

        load, train = {"sft": (load_sft_config, sft), "dpo": (load_dpo_config, dpo)}[stage]
        out = run.dir / stage
        records = run.dir / "synth" / f"{stage}.jsonl"
        config = load(run.config_path, [*run.overrides, f'{stage}.data=["{records}"]',
                                        f'{stage}.init_from="{run.last_model()}"', f'{stage}.out="{out}"'])
        resume = resume and bool(complete_checkpoints(out / "checkpoints"))
        if not resume:
            shutil.rmtree(out, ignore_errors=True)
        result = train(config, resume=resume, console=run.console)
        run.console.print(f"{stage}: {result.steps} steps, last loss {result.losses[-1]:.4f}")
        return [result.checkpoint]

    return run_stage


def _synth_settings(data: dict) -> dict:
    from lingcoder.synth import synth

    settings = dict(data.get("synth", {}))
    known = set(inspect.signature(synth).parameters) - {"curated", "out", "workers"}
    for key in settings:
        if key not in known:
            raise LingcoderError(f"synth.{key}: unknown key (known keys: {', '.join(sorted(known))})")
    return settings


def _curate_settings(data: dict) -> None:
    from lingcoder.data.curate import load_config

    settings = dict(data.get("curate", {}))
    settings.pop("sources", None)
    load_config(settings)


def _eval(run: Run, resume: bool) -> list[Path]:
    from lingcoder.evaluate.benchmarks import load_benchmark
    from lingcoder.evaluate.runner import run_eval

    cfg = from_dict(EvalStageConfig, run.table("eval"), where="eval")
    model = run.last_model()
    tasks = None
    if cfg.tasks:
        tasks = list(load_benchmark(cfg.benchmark).problems)[: cfg.tasks]
    out = run.dir / "eval"
    shutil.rmtree(out, ignore_errors=True)
    summary = run_eval(out, benchmark=cfg.benchmark, backend=cfg.backend, model=model, mode=cfg.mode, n=cfg.n,
                       temperature=cfg.temperature, max_tokens=cfg.max_tokens, tasks=tasks, k=cfg.k,
                       workers=run.workers, progress=False)
    for language, scores in summary["pass_at_k"][cfg.benchmark].items():
        shown = ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
        run.console.print(f"{cfg.benchmark} ({language}, {summary['n_tasks']} tasks, {model}): {shown}")
    return [out]


def _expert_usage(run: Run, resume: bool) -> list[Path]:
    from lingcoder.expert_usage import expert_usage

    reason = no_expert_usage_reason(run.dir)
    if reason:  # a dense model, say: the report says so too
        run.console.print(f"nothing to count: {reason}")
        return []
    return [expert_usage(run.dir)]


def _report(run: Run, resume: bool) -> list[Path]:
    from lingcoder.report import write_report

    return [write_report(run.dir)]


def _check(cls, table: str) -> Callable[[dict], Any]:
    return lambda data: from_dict(cls, data.get(table, {}), where=table)


STAGES = (
    Stage("curate", _tables("curate"), _curate, check=_curate_settings),
    Stage("tokenizer", lambda data: _vocab_size(data), _tokenizer),
    Stage("tokenize", _tables("tokenize"), _tokenize, check=_check(TokenizeStageConfig, "tokenize")),
    Stage("pretrain", _tables("model", "data", "train", "phases"), _pretrain, check=pretrain_config_from_dict),
    Stage("synth", _tables("synth"), _synth, needs_table="synth", check=_synth_settings),
    Stage("sft", _tables("sft"), _posttrain("sft"), needs_table="sft", check=_check(SFTConfig, "sft")),
    Stage("dpo", _tables("dpo"), _posttrain("dpo"), needs_table="dpo", check=_check(DPOConfig, "dpo")),
    Stage("expert-usage", lambda data: None, _expert_usage),
    Stage("eval", _tables("eval"), _eval, needs_table="eval", check=_check(EvalStageConfig, "eval")),
    Stage("report", lambda data: None, _report, always=True),
)
STAGE_NAMES = [stage.name for stage in STAGES]


def recipe(config: str | Path, overrides: list[str] = (), out: str | Path | None = None,
           from_stage: str | None = None, until: str | None = None, check: bool = False,
           console: Console | None = None) -> dict:
    """Run (or resume) every stage of CONFIG into one run directory; return the record (recipe.json).
    With `check`, only validate the config and print which stages would run."""
    console = console or Console()
    for name, value in (("--from", from_stage), ("--until", until)):
        if value is not None and value not in STAGE_NAMES:
            raise LingcoderError(f"{name} {value!r}: unknown stage (stages: {', '.join(STAGE_NAMES)})")
    config_path = Path(config)
    overrides = list(overrides)
    data = apply_overrides(load_toml(config_path), overrides)
    run_cfg = from_dict(RunConfig, data.get("run", {}), where="run")
    run_dir = Path(out or run_cfg.out).resolve()
    if not check:
        run_dir.mkdir(parents=True, exist_ok=True)
    record = _read_record(run_dir)
    record["config"] = data
    run = Run(run_dir, config_path, overrides, data, run_cfg.workers or os.cpu_count() or 1, console, record)

    stages = [s for s in STAGES if s.needs_table is None or s.needs_table in data]
    last = STAGE_NAMES.index(until) if until else len(STAGE_NAMES) - 1
    stages = [s for s in stages if STAGE_NAMES.index(s.name) <= last]
    for stage in stages:  # a typo in a late stage's table fails now, not after hours of training
        if stage.check:
            stage.check(data)
    plan = _plan(stages, data, record, from_stage)
    if check:
        _print_plan(plan, run_dir, console)
        return record
    for i, (stage, fingerprint, action) in enumerate(plan, 1):
        if action == "done":
            outputs = record["stages"][stage.name]["outputs"]
            console.print(f"[dim]{i}/{len(plan)} {stage.name}: done earlier -> {', '.join(outputs)}[/]")
            continue
        console.rule(f"[bold]{i}/{len(plan)} {stage.name}[/]" + (" (resuming)" if action == "resume" else ""))
        record["stages"][stage.name] = {"status": "started", "fingerprint": fingerprint}
        _write_record(run_dir, record)
        start = time.perf_counter()
        outputs = [str(p) for p in stage.run(run, action == "resume")]
        record["stages"][stage.name] = {
            "status": "done", "fingerprint": fingerprint, "seconds": round(time.perf_counter() - start, 2),
            "outputs": outputs, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_record(run_dir, record)
        console.print(f"[green]{stage.name}[/] -> {', '.join(outputs)}")
    _print_summary(record, [s.name for s in stages], console)
    return record


def _plan(stages: list[Stage], data: dict, record: dict, from_stage: str | None) -> list[tuple[Stage, str, str]]:
    """(stage, fingerprint, action) with action "done" (skip), "run" or "resume" (a started stage)."""
    plan, rerun, fingerprint = [], False, ""  # once a stage runs, every later stage runs too
    for stage in stages:
        fingerprint = _fingerprint(stage, data, fingerprint)
        done = record["stages"].get(stage.name, {})
        same = done.get("fingerprint") == fingerprint
        rerun = rerun or stage.name == from_stage
        if stage.always:
            action = "run"
        elif not rerun and same and done.get("status") == "done" and all(Path(p).exists() for p in done["outputs"]):
            action = "done"
        else:
            action = "resume" if not rerun and same and done.get("status") == "started" else "run"
            rerun = True
        plan.append((stage, fingerprint, action))
    return plan


def _print_plan(plan: list[tuple[Stage, str, str]], run_dir: Path, console: Console) -> None:
    table = Table(title=f"recipe plan for {run_dir} (config checked; nothing run)", title_justify="left")
    table.add_column("stage")
    table.add_column("action")
    for stage, _, action in plan:
        table.add_row(stage.name, {"done": "skip (done)", "run": "run", "resume": "resume"}[action])
    console.print(table)


def _vocab_size(data: dict) -> int:
    from lingcoder.model.config import model_config_from_table

    cfg = from_dict(TokenizeStageConfig, data.get("tokenize", {}), where="tokenize")
    return cfg.vocab_size or model_config_from_table(data.get("model", {})).vocab_size


def _fingerprint(stage: Stage, data: dict, previous: str) -> str:
    shaped_by = stage.shaped_by(data)
    text = json.dumps({"stage": stage.name, "config": shaped_by, "previous": previous}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_record(run_dir: Path) -> dict:
    path = run_dir / RECORD
    if not path.exists():
        return {"stages": {}}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LingcoderError(f"{path}: not valid JSON ({exc}); delete it to start the run afresh") from None
    if not isinstance(record, dict) or not isinstance(record.get("stages"), dict):
        raise LingcoderError(f"{path}: not a recipe record (no 'stages' table); delete it to start afresh")
    return record


def _write_record(run_dir: Path, record: dict) -> None:
    tmp = run_dir / f"{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, run_dir / RECORD)


def _print_summary(record: dict, names: list[str], console: Console) -> None:
    table = Table(title="recipe", title_justify="left")
    for column in ("stage", "seconds", "outputs"):
        table.add_column(column)
    for name in names:
        entry = record["stages"].get(name, {})
        table.add_row(name, f"{entry.get('seconds', 0):.1f}", "\n".join(entry.get("outputs", [])))
    console.print(table)
