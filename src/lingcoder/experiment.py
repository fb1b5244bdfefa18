"""`lingcoder experiment RUN_DIR`: the paper's two claims at small scale, on a recipe run's data.

- MoE vs dense: the run's MoE model and its dense twin (same activated parameters, HF's
  `first_k_dense_replace` on every layer) trained with the same phases, data and seed; compared on
  validation loss over several seeds.
- Curated vs raw: the same MoE model trained for the same tokens on the curated file-level corpus
  (file-high + file-low at their natural proportions) and on the raw corpus (every decodable code file
  of the same sources, nothing filtered, redacted or deduplicated; `data.curate.raw_corpus`), both
  tokenized by the run's tokenizer with the same document-level validation split. Repository samples
  are left out because they concatenate files whose held-out copies are the test set. Both are
  scored on the held-out high-quality files (the validation split of `file-high`, unseen by both),
  on HumanEval's canonical solutions given their prompts (nats/token), and by pass@1.

Each training run lives in RUN/experiment/<part>/<arm>-seed<N>/ and writes `result.json` when done,
so an interrupted experiment resumes. RUN/experiment/results.json (read by the report):
{"moe_vs_dense": {"tokens", "steps", "seeds", "runs": [{"model": "moe"|"dense", "seed", "total_params",
  "activated_params", "val_loss", "val_curve": [[step, loss], ...]}]},
 "curated_vs_raw": {"tokens", "steps", "seeds", "runs": [{"data": "curated"|"raw", "seed", "heldout_loss",
  "humaneval_canonical_loss", "pass_at_1", "val_curve"}]}}
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from lingcoder.data.shards import TokenIndex
from lingcoder.errors import LingcoderError
from lingcoder.model.config import count_parameters
from lingcoder.runfiles import read_metrics
from lingcoder.train.config import pretrain_config_from_dict
from lingcoder.train.pretrain import pretrain, validation_loss_sum

PARTS = ("moe_vs_dense", "curated_vs_raw")
HELDOUT_SOURCE = "file-high"
HELDOUT_TOKENS = 65_536


@dataclass
class ExperimentConfig:
    """`lingcoder experiment`."""

    run_dir: str  # a recipe run directory (its tokenizer and tokens are reused)
    seeds: int = 3  # training seeds per arm
    scale: float = 1.0  # multiplies every phase's token budget (e.g. 0.5 for a quicker look)
    eval_tasks: int = 20  # HumanEval tasks for pass@1 in the curated-vs-raw part
    parts: list[str] = field(default_factory=lambda: list(PARTS))  # which comparisons to run
    workers: int | None = None  # processes for the raw corpus, tokenization and judging; None = every core


def experiment(options: ExperimentConfig, console: Console | None = None) -> dict:
    """Run the comparisons on the recipe run in RUN_DIR; write and return RUN/experiment/results.json."""
    console = console or Console()
    run = Path(options.run_dir)
    seeds, scale, eval_tasks, parts, workers = (options.seeds, options.scale, options.eval_tasks, options.parts,
                                                options.workers)
    config = _recipe_config(run)
    for part in parts:
        if part not in PARTS:
            raise LingcoderError(f"experiment part {part!r}: unknown (parts: {', '.join(PARTS)})")
    if seeds < 1 or scale <= 0:
        raise LingcoderError(f"--seeds must be >= 1 and --scale > 0 (got {seeds}, {scale})")
    out = run / "experiment"
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    base = _scaled(config, scale)
    if "moe_vs_dense" in parts:
        results["moe_vs_dense"] = _moe_vs_dense(run, base, seeds, console)
    if "curated_vs_raw" in parts:
        results["curated_vs_raw"] = _curated_vs_raw(run, base, seeds, eval_tasks, workers, console)
    out.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    _print_tables(results, console)
    from lingcoder.report import write_report

    console.print(f"results -> {results_path}; report -> {write_report(run)}")
    return results


def _moe_vs_dense(run: Path, base: dict, seeds: int, console: Console) -> dict:
    runs = []
    for seed in range(seeds):
        for arm in ("moe", "dense"):
            config = copy.deepcopy(base)
            config.setdefault("model", {})["dense"] = arm == "dense"
            result = _train(run / "experiment" / "moe_vs_dense" / f"{arm}-seed{seed}", config, run / "tokens", seed,
                            console, f"{arm}, seed {seed}")
            runs.append({"model": arm, **result})
    return {**_budget(base), "seeds": list(range(seeds)), "runs": runs}


def _curated_vs_raw(run: Path, base: dict, seeds: int, eval_tasks: int, workers: int | None,
                    console: Console) -> dict:
    from lingcoder.data.curate import raw_corpus
    from lingcoder.data.tokenize import TokenizeConfig, tokenize

    root = run / "experiment" / "curated_vs_raw"
    curated_index = TokenIndex(run / "tokens")
    file_sources = [s for s in ("file-high", "file-low") if s in curated_index.sources]
    if HELDOUT_SOURCE not in file_sources or not curated_index.num_tokens(HELDOUT_SOURCE, "val"):
        raise LingcoderError(f"{run / 'tokens'}: no '{HELDOUT_SOURCE}' validation split to hold out")
    raw_tokens = root / "raw-tokens"
    if not (raw_tokens / "index.json").exists():
        settings = dict(base.get("curate", {}))
        sources = settings.pop("sources", [])
        console.rule("[bold]raw corpus[/] (the same sources, uncurated)")
        count = raw_corpus(sources or None, str(root / "raw"), workers=workers, config=settings)
        console.print(f"{count:,} raw documents")
        # The run's tokenizer, FIM and document split: a held-out file is held out in both corpora.
        split = curated_index.data
        fim = split["fim"]
        tokenize(TokenizeConfig(str(run / "tokenizer"), str(raw_tokens), curated=str(root / "raw"),
                                fim_rate=fim["rate"], spm_rate=fim["spm_rate"], val_fraction=split["val_fraction"],
                                seed=split["seed"], workers=workers or 1))
    natural = {s: float(curated_index.num_tokens(s, "train")) for s in file_sources}
    runs = []
    for seed in range(seeds):
        for arm, tokens, mixture in (("curated", run / "tokens", natural), ("raw", raw_tokens, {"raw": 1.0})):
            config = copy.deepcopy(base)
            for phase in config["phases"]:
                phase["mixture"] = mixture
            score = functools.partial(_score, heldout=curated_index, config=config, eval_tasks=eval_tasks,
                                      workers=workers)
            result = _train(root / f"{arm}-seed{seed}", config, tokens, seed, console, f"{arm} data, seed {seed}",
                            score)
            runs.append({"data": arm, **result})
    return {**_budget(base), "seeds": list(range(seeds)), "runs": runs}


def _train(out: Path, config: dict, tokens: Path, seed: int, console: Console, label: str, score=None) -> dict:
    """One training run (skipped when its result.json exists for the same settings)."""
    config = copy.deepcopy(config)
    config.setdefault("data", {})["tokens"] = str(tokens)
    config.setdefault("train", {}).update(out=str(out / "pretrain"), seed=seed)
    done = out / "result.json"
    if done.exists():
        saved = json.loads(done.read_text())
        if saved.get("config") == config:
            console.print(f"[dim]{label}: done earlier ({done})[/]")
            return saved["result"]
    shutil.rmtree(out, ignore_errors=True)
    console.rule(f"[bold]{label}[/]")
    pretrain_config = pretrain_config_from_dict(config)
    trained = pretrain(pretrain_config, console=console)
    total, active = count_parameters(pretrain_config.model)
    curve = [[r["step"], r["val_loss"]] for r in read_metrics(out / "pretrain" / "metrics.jsonl") if r["kind"] == "val"]
    result = {"seed": seed, "total_params": total, "activated_params": active, "tokens": trained.tokens,
              "val_loss": trained.val_loss, "val_curve": curve, "checkpoint": str(trained.checkpoint)}
    if score:
        result.update(score(trained.checkpoint, out))
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


def _scaled(config: dict, scale: float) -> dict:
    config = copy.deepcopy(config)
    for phase in config.get("phases", []):
        phase["tokens"] = max(1, int(phase.get("tokens", 0) * scale))
    return config


def _budget(config: dict) -> dict:
    pretrain_config = pretrain_config_from_dict(config)
    return {"tokens": sum(p.tokens for p in pretrain_config.phases), "steps": sum(pretrain_config.phase_steps(1))}


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def _print_tables(results: dict, console: Console) -> None:
    for part, arm_key, metrics in (("moe_vs_dense", "model", ("val_loss",)),
                                   ("curated_vs_raw", "data", ("heldout_loss", "humaneval_canonical_loss",
                                                               "pass_at_1"))):
        if part not in results:
            continue
        table = Table(title=f"{part} ({results[part]['tokens']:,} tokens, seeds {results[part]['seeds']})",
                      title_justify="left")
        table.add_column(arm_key)
        for metric in metrics:
            table.add_column(metric + " (mean ± std)")
        for arm in dict.fromkeys(r[arm_key] for r in results[part]["runs"]):
            rows = [r for r in results[part]["runs"] if r[arm_key] == arm]
            table.add_row(arm, *(_mean_std([r[m] for r in rows]) for m in metrics))
        console.print(table)
