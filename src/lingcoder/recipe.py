"""`lingcoder recipe CONFIG`: one command from raw repositories to an evaluated model, with a report.

The stages run in order, each writing its files into one run directory RUN:

    curate -> tokenizer -> tokenize -> pretrain -> synth -> sft -> dpo -> expert-usage -> eval -> report

`RUN/recipe.json` records, per stage, a fingerprint of what shaped its output (its own config tables
plus the fingerprint of the stage before it), its wall time and its outputs. A stage is skipped when
its fingerprint is unchanged and its outputs exist, so an interrupted recipe resumes at the first
unfinished stage (pretraining and SFT continue from their last checkpoint) and an edited config
reruns the stage it touches and every stage after it. Stages whose table is absent from the config
(`[synth]`, `[sft]`, `[dpo]`, `[eval]`) are left out. The report is rebuilt on every run.

One TOML file configures everything: `[run]` belongs to the recipe; every other table is a stage's
own config, the same one its command reads with `--config` (`[curate]`, `[tokenizer]`, `[tokenize]`,
`[synth]`, `[eval]`; `[model]`, `[data]`, `[train]`, `[[phases]]`, `[sft]`, `[dpo]` for training). Each
stage builds its typed config object from its table with the run's paths filled in as fields; all of
them are built before the first stage runs, so a typo or a wrong type anywhere fails at once (and
`--check` does only that).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lingcoder.config import ConfigError, apply_overrides, from_dict, load_toml, stage_config_from_table
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
class Run:
    """What every stage sees: the run directory, the whole config (overrides applied), the record."""

    dir: Path
    data: dict[str, Any]
    workers: int
    console: Console
    record: dict[str, Any]
    planning: bool = False  # every stage's config is built before the first stage runs, from the outputs to come
    verbose: bool = False  # datatrove's logs on the console too (they always go to the stages' log files)

    def table(self, name: str) -> dict[str, Any]:
        return dict(self.data.get(name, {}))

    def stage_outputs(self, stage: str) -> list[str]:
        return self.record["stages"].get(stage, {}).get("outputs", [])

    def last_model(self, before: str) -> str:
        """The newest checkpoint of the training stages before stage `before` (when planning: where the
        last of them will write)."""
        earlier = [s for s in ("pretrain", "sft", "dpo") if s in STAGE_NAMES[: STAGE_NAMES.index(before)]
                   and (s == "pretrain" or s in self.data)]
        for stage in reversed(earlier):
            if self.stage_outputs(stage):
                return self.stage_outputs(stage)[0]
        if self.planning:
            return str(self.dir / earlier[-1])
        raise LingcoderError("no trained model in this run: the pretrain stage has not finished")


@dataclass(frozen=True)
class Stage:
    name: str
    shaped_by: Callable[[dict], Any]  # the part of the config that shapes its output (fingerprinted)
    run: Callable[[Run, bool], list[Path]]  # (run, resume) -> outputs; resume: continue a started stage
    needs_table: str | None = None  # left out when the config has no such table
    always: bool = False  # cheap and reads every other stage: rebuilt on every run
    config: Callable[[Run], Any] | None = None  # the stage's typed config (built before any stage runs)


def _tables(*names: str) -> Callable[[dict], Any]:
    return lambda data: {name: data.get(name) for name in names}


def _curate_config(run: Run):
    from lingcoder.data.curate import CurateConfig

    config = stage_config_from_table(CurateConfig, run.data, "curate", out=str(run.dir / "curated"),
                                     workers=run.workers, quiet=True, verbose=run.verbose)
    if config.executor.kind == "slurm":  # submitted jobs would finish after the next stage starts
        raise ConfigError("curate.executor.kind: the recipe needs curation done before tokenizing; use local or "
                          "ray, or run `lingcoder curate --executor slurm` on its own")
    return config


def _curate(run: Run, resume: bool) -> list[Path]:
    from lingcoder.data.curate import curate

    curate(_curate_config(run))
    return [run.dir / "curated"]


def _tokenizer_config(run: Run):
    from lingcoder.data.tokenize import TokenizerTrainConfig

    paths = {"data": str(run.dir / "curated"), "out": str(run.dir / "tokenizer")}
    if "vocab_size" not in run.table("tokenizer"):  # the model's, unless the table says otherwise
        paths["vocab_size"] = _model_vocab_size(run.data)
    return stage_config_from_table(TokenizerTrainConfig, run.data, "tokenizer", **paths)


def _model_vocab_size(data: dict) -> int:
    from lingcoder.model.config import model_config_from_table

    return model_config_from_table(data.get("model", {})).vocab_size


def _tokenizer_shape(data: dict) -> Any:
    """What shapes the tokenizer: its vocabulary size (the model's by default) and any other [tokenizer] key."""
    table = dict(data.get("tokenizer", {}))
    vocab_size = table.pop("vocab_size", None) or _model_vocab_size(data)
    return {"vocab_size": vocab_size, **table} if table else vocab_size


def _tokenizer(run: Run, resume: bool) -> list[Path]:
    from lingcoder.data.tokenize import train_tokenizer_on_parquet

    report = train_tokenizer_on_parquet(_tokenizer_config(run))
    run.console.print(f"{report['vocab_size']:,} tokens, lossless on {report['round_trip_ok']:,} documents")
    return [run.dir / "tokenizer"]


def _tokenize_config(run: Run):
    from lingcoder.data.tokenize import TokenizeConfig

    return stage_config_from_table(TokenizeConfig, run.data, "tokenize", curated=str(run.dir / "curated"),
                                   tokenizer=str(run.dir / "tokenizer"), out=str(run.dir / "tokens"),
                                   workers=run.workers)


def _tokenize(run: Run, resume: bool) -> list[Path]:
    from lingcoder.data.tokenize import tokenize

    config = _tokenize_config(run)
    config.verbose = config.verbose or run.verbose
    index = tokenize(config)
    for name, entry in index["sources"].items():
        run.console.print(f"  {name}: {entry['train']['tokens']:,} train / {entry['val']['tokens']:,} val tokens")
    return [run.dir / "tokens"]


def _pretrain_config(run: Run):
    config = pretrain_config_from_dict(run.data)
    config.data.tokens = str(run.dir / "tokens")
    config.train.out = str(run.dir / "pretrain")
    return config


def _pretrain(run: Run, resume: bool) -> list[Path]:
    from lingcoder.train.pretrain import pretrain

    config = _pretrain_config(run)
    out = Path(config.train.out)
    resume = resume and bool(complete_checkpoints(out / "checkpoints"))
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
    result = pretrain(config, resume=resume, console=run.console)
    run.console.print(f"validation loss {result.val_loss:.3f} vs unigram entropy {result.unigram_entropy:.3f} "
                      f"nats/token after {result.tokens:,} tokens")
    return [result.checkpoint]


def _synth_config(run: Run):
    from lingcoder.synth import SynthConfig

    return stage_config_from_table(SynthConfig, run.data, "synth", curated=str(run.dir / "curated"),
                                   out=str(run.dir / "synth"), workers=run.workers)


def _synth(run: Run, resume: bool) -> list[Path]:
    from lingcoder.synth import synth

    config = _synth_config(run)
    stats = synth(config)
    run.console.print(f"{stats['sft_records']:,} verified SFT records, {stats['dpo']['pairs']:,} DPO pairs")
    return [Path(config.out)]


def _posttrain_config(stage: str):
    """The sft or dpo table, with the run's records, starting model and output filled in."""
    cls = {"sft": SFTConfig, "dpo": DPOConfig}[stage]
    return lambda run: stage_config_from_table(
        cls, run.data, stage, data=[str(run.dir / "synth" / f"{stage}.jsonl")], init_from=run.last_model(stage),
        out=str(run.dir / stage))


def _posttrain(stage: str):
    """The sft or dpo stage."""

    def run_stage(run: Run, resume: bool) -> list[Path]:
        from lingcoder.train.dpo import dpo
        from lingcoder.train.sft import sft

        train = {"sft": sft, "dpo": dpo}[stage]
        config = _posttrain_config(stage)(run)
        out = Path(config.out)
        resume = resume and bool(complete_checkpoints(out / "checkpoints"))
        if not resume:
            shutil.rmtree(out, ignore_errors=True)
        result = train(config, resume=resume, console=run.console)
        run.console.print(f"{stage}: {result.steps} steps, last loss {result.losses[-1]:.4f}")
        return [result.checkpoint]

    return run_stage


def _eval_config(run: Run):
    from lingcoder.evaluate.runner import EvalConfig

    backend = run.data.get("eval", {}).get("backend", "checkpoint")
    if backend not in ("checkpoint", "vllm"):  # the recipe evaluates its own model: on our engine or vLLM's
        raise LingcoderError(f"eval.backend {backend!r}: unknown for the recipe (known: checkpoint, vllm)")
    return stage_config_from_table(EvalConfig, run.data, "eval", out=str(run.dir / "eval"), backend=backend,
                                   model=run.last_model("eval"), workers=run.workers, progress=False)


def _eval(run: Run, resume: bool) -> list[Path]:
    from lingcoder.evaluate.runner import run_eval

    cfg = _eval_config(run)
    shutil.rmtree(cfg.out, ignore_errors=True)
    summary = run_eval(cfg)
    counts = summary.get("per_benchmark") or {name: summary["per_language"] for name in summary["pass_at_k"]}
    for bench, languages in summary["pass_at_k"].items():  # one benchmark, or each of the [eval] list
        for language, scores in languages.items():
            shown = ", ".join(f"{name} {'-' if value is None else f'{value:.3f}'}" for name, value in scores.items())
            tasks = counts[bench][language]["tasks"]
            run.console.print(f"{bench} ({language}, {tasks} tasks, {cfg.model}): {shown}")
    return [Path(cfg.out)]


def _expert_usage(run: Run, resume: bool) -> list[Path]:
    from lingcoder.expert_usage import expert_usage

    reason = no_expert_usage_reason(run.dir)
    if reason:  # a dense model, say: the report says so too
        run.console.print(f"nothing to count: {reason}")
        return []
    return [expert_usage(_expert_usage_config(run))]


def _expert_usage_config(run: Run):
    from lingcoder.expert_usage import ExpertUsageConfig

    return stage_config_from_table(ExpertUsageConfig, run.data, "expert_usage", run_dir=str(run.dir))


def _report(run: Run, resume: bool) -> list[Path]:
    from lingcoder.report import write_report

    return [write_report(run.dir)]


STAGES = (
    Stage("curate", _tables("curate"), _curate, config=_curate_config),
    Stage("tokenizer", lambda data: _tokenizer_shape(data), _tokenizer, config=_tokenizer_config),
    Stage("tokenize", _tables("tokenize"), _tokenize, config=_tokenize_config),
    Stage("pretrain", _tables("model", "data", "train", "phases"), _pretrain, config=_pretrain_config),
    Stage("synth", _tables("synth"), _synth, needs_table="synth", config=_synth_config),
    Stage("sft", _tables("sft"), _posttrain("sft"), needs_table="sft", config=_posttrain_config("sft")),
    Stage("dpo", _tables("dpo"), _posttrain("dpo"), needs_table="dpo", config=_posttrain_config("dpo")),
    Stage("expert-usage", _tables("expert_usage"), _expert_usage, config=_expert_usage_config),
    Stage("eval", _tables("eval"), _eval, needs_table="eval", config=_eval_config),
    Stage("report", lambda data: None, _report, always=True),
)
STAGE_NAMES = [stage.name for stage in STAGES]


def recipe(config: str | Path, overrides: list[str] = (), out: str | Path | None = None,
           from_stage: str | None = None, until: str | None = None, check: bool = False,
           console: Console | None = None, verbose: bool = False) -> dict:
    """Run (or resume) every stage of CONFIG into one run directory; return the record (recipe.json).
    With `check`, only validate the config and print which stages would run; with `verbose`, the data
    stages also show datatrove's logs on the console."""
    console = console or Console()
    for name, value in (("--from", from_stage), ("--until", until)):
        if value is not None and value not in STAGE_NAMES:
            raise LingcoderError(f"{name} {value!r}: unknown stage (stages: {', '.join(STAGE_NAMES)})")
    data = apply_overrides(load_toml(config), list(overrides))
    run_cfg = from_dict(RunConfig, data.get("run", {}), where="run")
    run_dir = Path(out or run_cfg.out).resolve()
    if not check:
        run_dir.mkdir(parents=True, exist_ok=True)
    record = _read_record(run_dir)
    record["config"] = data
    run = Run(run_dir, data, run_cfg.workers or os.cpu_count() or 1, console, record, planning=True,
              verbose=verbose)

    stages = [s for s in STAGES if s.needs_table is None or s.needs_table in data]
    last = STAGE_NAMES.index(until) if until else len(STAGE_NAMES) - 1
    stages = [s for s in stages if STAGE_NAMES.index(s.name) <= last]
    for stage in stages:  # a typo or wrong type in a late stage's table fails now, not after hours of training
        if stage.config:
            stage.config(run)
    plan = _plan(stages, data, record, from_stage)
    if check:
        _print_plan(plan, run_dir, console)
        return record
    run.planning = False
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
