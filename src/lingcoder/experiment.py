"""`lingcoder experiment RUN_DIR --study NAME`: a study (lingcoder/study.py) run on a recipe run's data.

Each arm's config is the recipe's config with the study's and the arm's `--set` overrides applied
(lingcoder.config.apply_overrides), so an arm is anything a config can say: the dense twin
(`model.dense=true`), top-k, expert count and width, shared experts, the balancing losses, the data.
Every phase's token budget is scaled to the study's `tokens`.

- A "train" study trains every arm once per seed and compares them on validation loss (and, when the
  study lists them, held-out high-quality files, HumanEval canonical solutions and pass@1).
- An "inference" study trains one model per seed and evaluates it under each arm's model settings
  (e.g. more or fewer activated experts than it was trained with): validation loss and greedy decode
  time per token.
- Data arms: `recipe` (the run's tokens, the phases' mixtures), `curated-files` (the curated file-level
  corpus, file-high + file-low at their natural proportions) and `raw` (every decodable code file of
  the same sources, nothing filtered, redacted or deduplicated; `data.curate.raw_corpus`, tokenized
  by the run's tokenizer with the same document split). Repository samples are left out of the last
  two because they concatenate files whose held-out copies are the test set; both are scored on the
  held-out high-quality files (the validation split of `file-high`, unseen by both).

Each run lives in RUN/experiment/<study>/<arm>-seed<N>/ (its pretrain/ output with metrics.jsonl and
checkpoints, `run.json` with its config, `result.json` when done): a finished run is reused, an
interrupted one continues from its last complete checkpoint. RUN/experiment/results.json holds one
entry per study (read by the report), rewritten after every run:
{"<study>": {"study", "description", "kind", "tokens", "steps", "seeds", "metrics", "baseline",
  "arms": [{"name", "set", "data"}], "runs": [{"arm", "seed", "total_params", "activated_params", <metrics>,
  "val_curve": [[tokens, loss], ...], "expert_load": [[share, ...] per MoE layer] | null,
  "router_entropy": [...] | null, "seconds"}], "stats": (lingcoder.study_stats.study_statistics)}}
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from lingcoder.config import ConfigError, apply_overrides
from lingcoder.data.shards import TokenIndex
from lingcoder.errors import LingcoderError
from lingcoder.model.config import count_parameters
from lingcoder.runfiles import read_metrics
from lingcoder.study import Study, load_study
from lingcoder.study_stats import format_difference, format_summary, study_statistics
from lingcoder.train.config import pretrain_config_from_dict
from lingcoder.train.pretrain import pretrain, validation_loss_sum

HELDOUT_SOURCE = "file-high"
HELDOUT_TOKENS = 65_536
DECODE_PROMPT_TOKENS = 32
DECODE_NEW_TOKENS = 64


@dataclass
class ExperimentConfig:
    """`lingcoder experiment`."""

    run_dir: str  # a recipe run directory (its tokenizer and tokens are reused)
    study: str = "moe-vs-dense"  # a shipped study's name or a study TOML file
    quick: bool = False  # the study's tiny-budget variant (its [quick] table)
    seeds: int | None = None  # training seeds per arm; None = the study's
    tokens: int | None = None  # pretraining tokens per run; None = the study's, 0 = the recipe's
    eval_tasks: int = 20  # HumanEval tasks for pass@1 (studies that measure it)
    workers: int | None = None  # processes for the raw corpus, tokenization and judging; None = every core


def experiment(options: ExperimentConfig, console: Console | None = None) -> dict:
    """Run the study on the recipe run in RUN_DIR; its entry of RUN/experiment/results.json is written after
    every run and returned."""
    console = console or Console()
    run = Path(options.run_dir)
    spec, base, configs = study_configs(run, options.study, options.quick, options.seeds, options.tokens)
    context = _Context(run, spec, base, options.eval_tasks, options.workers, console)
    console.rule(f"[bold]study {spec.name}[/]: {len(spec.arms)} arms x {spec.seeds} seeds, "
                 f"{_budget(base)['tokens']:,} tokens per run")
    runs: list[dict] = []
    entry = _write(context, runs)
    for seed in range(spec.seeds):
        if spec.kind == "inference":
            runs.extend(_inference_seed(context, seed))
            entry = _write(context, runs)
            continue
        for arm in spec.arms:
            runs.append({"arm": arm.name, **_train_arm(context, arm, configs[arm.name], seed)})
            entry = _write(context, runs)  # a study cut short still shows what it finished
    _print_table(entry, console)
    from lingcoder.report import write_report

    console.print(f"results -> {run / 'experiment' / 'results.json'}; report -> {write_report(run)}")
    return entry


def study_configs(run_dir: str | Path, study: str | Path | Study, quick: bool = False, seeds: int | None = None,
                  tokens: int | None = None) -> tuple[Study, dict, dict[str, dict]]:
    """(the study as it runs, its base config, each arm's full config) on the recipe run in RUN_DIR: the
    recipe's config with the study's overrides and token budget, then each arm's overrides (for an
    inference study every arm trains the base config). Every config is checked before anything runs."""
    recipe_config = _recipe_config(Path(run_dir))
    spec = study if isinstance(study, Study) else load_study(study)
    spec = spec.variant(quick=quick, seeds=seeds, tokens=tokens)
    try:
        base = _budgeted(apply_overrides(recipe_config, spec.set), spec.tokens)
    except LingcoderError as exc:
        raise ConfigError(f"study {spec.name!r}: {exc}") from None
    return spec, base, {arm.name: _arm_config(base, arm, spec) for arm in spec.arms}


@dataclass
class _Context:
    """What every run of one study shares."""

    run: Path
    study: Study
    base: dict
    eval_tasks: int
    workers: int | None
    console: Console

    @property
    def root(self) -> Path:
        return self.run / "experiment" / self.study.key


def _arm_config(base: dict, arm, study: Study) -> dict:
    """The arm's full config, checked now (before any training) so a bad override fails at once."""
    config = base if study.kind == "inference" else apply_overrides(base, arm.set)
    try:
        pretrain_config_from_dict(config)
        if study.kind == "inference":
            _model_for_arm(config, arm.set)
    except LingcoderError as exc:
        raise ConfigError(f"study {study.name!r}, arm {arm.name!r}: {exc}") from None
    return config


def _model_for_arm(config: dict, overrides: list[str]):
    from lingcoder.model.config import model_config_from_table

    trained = pretrain_config_from_dict(config).model
    return model_config_from_table(apply_overrides({}, overrides).get("model", {}), base=trained)


def _train_arm(context: _Context, arm, config: dict, seed: int) -> dict:
    tokens, mixture = _data(context, arm.data)
    config = copy.deepcopy(config)
    if mixture is not None:
        for phase in config["phases"]:
            phase["mixture"] = mixture
    result = _train(context.root / f"{arm.name}-seed{seed}", config, tokens, seed, context.console,
                    f"{context.study.name}: {arm.name}, seed {seed}")
    wanted = [m for m in context.study.metrics if m != "val_loss"]
    if wanted:
        out = context.root / f"{arm.name}-seed{seed}"
        scores_path = out / "scores.json"
        if scores_path.exists():
            scores = json.loads(scores_path.read_text())
        else:
            scores = _score(Path(result["checkpoint"]), out, TokenIndex(context.run / "tokens"), config,
                            context.eval_tasks, context.workers)
            scores_path.write_text(json.dumps(scores, indent=2) + "\n")
        result.update(scores)
    return result


def _inference_seed(context: _Context, seed: int) -> list[dict]:
    """Train the study's model for `seed` once, then evaluate it under each arm's model settings."""
    from lingcoder.model.checkpoint import load_checkpoint

    trained = _train(context.root / f"trained-seed{seed}", context.base, context.run / "tokens", seed,
                     context.console, f"{context.study.name}: the trained model, seed {seed}")
    checkpoint = Path(trained["checkpoint"])
    pretrain_config = pretrain_config_from_dict(context.base)
    index = TokenIndex(context.run / "tokens")
    sources = sorted({s for p in pretrain_config.phases for s in p.mixture
                      if index.num_tokens(s, "val") > pretrain_config.data.seq_len})
    runs = []
    for arm in context.study.arms:
        done = context.root / f"trained-seed{seed}" / f"eval-{arm.name}.json"
        model_config = _model_for_arm(context.base, arm.set)
        if done.exists() and json.loads(done.read_text()).get("checkpoint") == trained["checkpoint"]:
            runs.append(json.loads(done.read_text())["result"])
            continue
        model = load_checkpoint(checkpoint, dtype=torch.float32, config=model_config).eval()
        loss_sum = count = 0
        for source in sources:
            s, n = validation_loss_sum(model, index, source, pretrain_config.data.seq_len,
                                       pretrain_config.data.eval_tokens, batch_size=8, device=torch.device("cpu"))
            loss_sum, count = loss_sum + s, count + n
        total, active = count_parameters(model_config)
        result = {"arm": arm.name, "seed": seed, "total_params": total, "activated_params": active,
                  "tokens": trained["tokens"], "val_loss": loss_sum / count if count else None,
                  "decode_ms_per_token": decode_ms_per_token(model, index, sources[0] if sources else None),
                  "val_curve": trained["val_curve"], "expert_load": trained["expert_load"],
                  "router_entropy": trained["router_entropy"], "num_experts_per_tok": model_config.num_experts_per_tok,
                  "seconds": trained["seconds"]}
        context.console.print(f"{arm.name}, seed {seed}: validation loss {result['val_loss']:.4f}, "
                              f"{result['decode_ms_per_token']:.2f} ms/token")
        done.write_text(json.dumps({"checkpoint": trained["checkpoint"], "result": result}, indent=2) + "\n")
        runs.append(result)
    return runs


@torch.no_grad()
def decode_ms_per_token(model, index: TokenIndex, source: str | None) -> float:
    """Greedy decoding time per new token (ms, batch 1, KV cache), after one warm-up, from a validation prompt."""
    from lingcoder.generation.generate import generate_ids
    from lingcoder.generation.sampling import SamplingParams

    prompt = [int(t) for t in index.stream(source, "val").window(0, DECODE_PROMPT_TOKENS)] if source else [0]
    params = SamplingParams(max_tokens=DECODE_NEW_TOKENS, temperature=0.0)
    generate_ids(model, [prompt], SamplingParams(max_tokens=4))
    start = time.perf_counter()
    new = generate_ids(model, [prompt], params)  # no eos: every one of the new tokens is decoded
    return (time.perf_counter() - start) * 1000 / max(1, len(new[0]))


def _data(context: _Context, data: str) -> tuple[Path, dict | None]:
    """(tokens directory, mixture replacing every phase's, or None to keep the recipe's) of a data arm."""
    run = context.run
    if data == "recipe":
        return run / "tokens", None
    curated_index = TokenIndex(run / "tokens")
    file_sources = [s for s in ("file-high", "file-low") if s in curated_index.sources]
    if HELDOUT_SOURCE not in file_sources or not curated_index.num_tokens(HELDOUT_SOURCE, "val"):
        raise LingcoderError(f"{run / 'tokens'}: no '{HELDOUT_SOURCE}' validation split to hold out")
    if data == "curated-files":
        return run / "tokens", {s: float(curated_index.num_tokens(s, "train")) for s in file_sources}
    return _raw_tokens(context, curated_index), {"raw": 1.0}


def _raw_tokens(context: _Context, curated_index: TokenIndex) -> Path:
    from lingcoder.config import stage_config_from_table
    from lingcoder.data.curate import CurateConfig, raw_corpus
    from lingcoder.data.tokenize import TokenizeConfig, tokenize

    root = context.run / "experiment" / "raw"
    raw_tokens = root / "tokens"
    if not (raw_tokens / "index.json").exists():
        context.console.rule("[bold]raw corpus[/] (the same sources, uncurated)")
        count = raw_corpus(stage_config_from_table(CurateConfig, context.base, "curate", out=str(root / "documents"),
                                                   workers=context.workers or 0, quiet=True, verbose=False))
        context.console.print(f"{count:,} raw documents")
        # The run's tokenizer, FIM and document split: a held-out file is held out in both corpora.
        split = curated_index.data
        fim = split["fim"]
        tokenize(TokenizeConfig(str(context.run / "tokenizer"), str(raw_tokens), curated=str(root / "documents"),
                                fim_rate=fim["rate"], spm_rate=fim["spm_rate"], val_fraction=split["val_fraction"],
                                seed=split["seed"], workers=context.workers or 1))
    return raw_tokens


def _train(out: Path, config: dict, tokens: Path, seed: int, console: Console, label: str) -> dict:
    """One training run: reused when its result.json has the same config, continued from its last complete
    checkpoint when it was interrupted with the same config, else (re)started."""
    config = copy.deepcopy(config)
    config.setdefault("data", {})["tokens"] = str(tokens)
    config.setdefault("train", {}).update(out=str(out / "pretrain"), seed=seed)
    done, started = out / "result.json", out / "run.json"
    if done.exists():
        saved = json.loads(done.read_text())
        if saved.get("config") == config:
            console.print(f"[dim]{label}: done earlier ({done})[/]")
            return saved["result"]
    from lingcoder.runfiles import complete_checkpoints

    resume = (started.exists() and json.loads(started.read_text()).get("config") == config
              and bool(complete_checkpoints(out / "pretrain" / "checkpoints")))
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        started.write_text(json.dumps({"config": config}, indent=2) + "\n")
    console.rule(f"[bold]{label}[/]" + (" (continuing)" if resume else ""))
    pretrain_config = pretrain_config_from_dict(config)
    clock = time.perf_counter()
    trained = pretrain(pretrain_config, resume=resume, console=console)
    total, active = count_parameters(pretrain_config.model)
    records = read_metrics(out / "pretrain" / "metrics.jsonl")
    with_load = [r for r in records if r.get("kind") == "train" and "expert_load" in r]
    result = {"seed": seed, "total_params": total, "activated_params": active, "tokens": trained.tokens,
              "steps": trained.steps, "val_loss": trained.val_loss,
              "val_curve": [[r["tokens"], r["val_loss"]] for r in records if r["kind"] == "val"],
              "expert_load": with_load[-1]["expert_load"] if with_load else None,
              "router_entropy": with_load[-1].get("router_entropy") if with_load else None,
              "seconds": round(time.perf_counter() - clock, 1), "checkpoint": str(trained.checkpoint)}
    done.write_text(json.dumps({"config": config, "result": result}, indent=2) + "\n")
    return result


def _score(checkpoint: Path, out: Path, heldout: TokenIndex, config: dict, eval_tasks: int,
           workers: int | None) -> dict:
    from lingcoder.evaluate.benchmarks import load_benchmark
    from lingcoder.evaluate.runner import EvalConfig, run_eval
    from lingcoder.generation.generate import load_for_generation

    model, tokenizer = load_for_generation(checkpoint)
    seq_len = pretrain_config_from_dict(config).data.seq_len
    benchmark = load_benchmark("humaneval")
    scores = {"heldout_loss": heldout_loss(model, heldout, HELDOUT_SOURCE, seq_len),
              "humaneval_canonical_loss": completion_loss(
                  model, tokenizer, [(p.prompt, p.reference) for p in benchmark.problems.values() if p.reference])}
    summary = run_eval(EvalConfig(str(out / "eval"), backend="checkpoint", model=str(checkpoint), mode="base",
                                  max_tokens=128, limit=eval_tasks, k=[1], workers=workers, progress=False))
    scores["pass_at_1"] = summary["pass_at_k"]["humaneval"]["python"]["pass@1"]
    return scores


def heldout_loss(model, index: TokenIndex, source: str, seq_len: int, max_tokens: int = HELDOUT_TOKENS) -> float:
    """Mean next-token loss (nats/token) on the first `max_tokens` of a source's validation split."""
    loss_sum, tokens = validation_loss_sum(model, index, source, seq_len, max_tokens, batch_size=8,
                                           device=next(model.parameters()).device)
    return loss_sum / tokens


@torch.no_grad()
def completion_loss(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    """Mean loss (nats/token) of each completion's tokens given its prompt, over all pairs."""
    eos = tokenizer.token_to_id("<|endoftext|>")
    limit = model.config.max_position_embeddings
    total, count = 0.0, 0
    for prompt, completion in pairs:
        encoding = tokenizer.encode(prompt + completion)
        ids = [eos, *encoding.ids][:limit]
        # The completion's tokens are those that start inside it (a token across the seam counts as prompt).
        first = 1 + next((i for i, (start, _) in enumerate(encoding.offsets) if start >= len(prompt)), len(ids))
        if first >= len(ids):
            continue  # the prompt alone fills the context
        input_ids = torch.tensor([ids[:-1]])
        logits_TV = model(input_ids).logits[0].float()
        targets = torch.tensor(ids[1:])
        losses = F.cross_entropy(logits_TV, targets, reduction="none")[first - 1 :]
        total, count = total + losses.sum().item(), count + losses.numel()
    return total / count


def _recipe_config(run: Path) -> dict:
    record_path = run / "recipe.json"
    if not record_path.exists():
        raise LingcoderError(f"{run}: not a recipe run directory (no recipe.json); run `lingcoder recipe` first")
    record = json.loads(record_path.read_text())
    for stage in ("tokenizer", "tokenize"):
        if record.get("stages", {}).get(stage, {}).get("status") != "done":
            raise LingcoderError(f"{run}: the recipe's {stage} stage has not finished; the experiment needs it")
    return record["config"]


def _budgeted(config: dict, tokens: int) -> dict:
    """Every phase's tokens scaled so that they sum to `tokens` (0: as configured), each at least 1."""
    config = copy.deepcopy(config)
    phases = config.get("phases", [])
    total = sum(p.get("tokens", 0) for p in phases)
    if tokens and total:
        for phase in phases:
            phase["tokens"] = max(1, round(phase.get("tokens", 0) * tokens / total))
    return config


def _budget(config: dict) -> dict:
    pretrain_config = pretrain_config_from_dict(config)
    return {"tokens": sum(p.tokens for p in pretrain_config.phases), "steps": sum(pretrain_config.phase_steps(1))}


def _write(context: _Context, runs: list[dict]) -> dict:
    """Rewrite this study's entry of RUN/experiment/results.json (the other studies' are kept)."""
    study = context.study
    entry = {"study": study.name, "description": study.description, "kind": study.kind, **_budget(context.base),
             "seeds": list(range(study.seeds)), "metrics": study.metrics, "baseline": study.baseline,
             "arms": [{"name": a.name, "set": a.set, "data": a.data} for a in study.arms],
             "set": study.set,
             "runs": [{k: v for k, v in r.items() if k != "checkpoint"} for r in runs],
             "stats": study_statistics(runs, [a.name for a in study.arms], study.metrics, study.baseline)}
    path = context.run / "experiment" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[study.key] = entry
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    return entry


def _print_table(entry: dict, console: Console) -> None:
    stats = entry["stats"]
    table = Table(title=f"{entry['study']} ({entry['tokens']:,} tokens, seeds {entry['seeds']}; {stats['interval']})",
                  title_justify="left")
    table.add_column("arm")
    for metric in entry["metrics"]:
        table.add_column(f"{metric}: mean ± sd [95% CI]")
        if entry["baseline"]:
            table.add_column(f"minus {entry['baseline']} [95% CI] (wins)")
    for arm, by_metric in stats["arms"].items():
        cells = []
        for metric in entry["metrics"]:
            cells.append(format_summary(by_metric[metric]))
            if entry["baseline"]:
                paired = stats["paired"].get(arm, {}).get(metric)
                cells.append(format_difference(paired) if paired else "baseline")
        table.add_row(arm, *cells)
    console.print(table)

