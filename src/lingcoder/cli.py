"""The `lingcoder` command line: one typer app, each subcommand a thin wrapper over a library call.

Each stage command builds its stage's config dataclass with `lingcoder.config.load_stage_config`:
the dataclass's defaults, then the `[table]` of `--config FILE`, then `--set table.key=value`, then the
flags given. Flags therefore default to None (not given) and this module holds no defaults.

Library functions raise `LingcoderError` for bad input; `main` prints those as one line and exits 2,
so users never see a traceback for a mistake of theirs.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from lingcoder.errors import LingcoderError

app = typer.Typer(
    help="lingcoder: curate code data, train a fine-grained MoE code model, evaluate it, serve it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Ling-Coder-Lite, end to end."""


def main() -> None:
    try:
        app()
    except LingcoderError as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        sys.exit(2)


def _stage_config(cls, table: str, config: str | None, overrides: list[str] | None, **flags):
    """`cls` from defaults < [table] of `config` < `--set` < the flags given (None or an empty list: not given)."""
    from lingcoder.config import load_stage_config

    given = {k: v for k, v in flags.items() if v is not None and v != []}
    return load_stage_config(cls, table, config, overrides or [], given)


def _config_option(table: str):
    return typer.Option("--config", help=f"TOML file; this command reads its \\[{table}] table (flags win over it).")


def _set_option(table: str, example: str):
    return typer.Option("--set", help=f"Override a key of \\[{table}], e.g. --set {table}.{example}.")


@app.command()
def version() -> None:
    """Print the lingcoder version."""
    from lingcoder import __version__

    print(__version__)


# -- model -------------------------------------------------------------------------------------
model_app = typer.Typer(help="Inspect model configs and checkpoints.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("info")
def model_info(
    config_or_dir: Annotated[str, typer.Argument(help="A preset (tiny, small, ling-coder-lite), a TOML config, "
                                                      "or a checkpoint directory.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a model field, e.g. --set num_experts=8.")]
    = None,
    dense: Annotated[bool, typer.Option(help="Describe the dense twin (same activated parameters).")] = False,
) -> None:
    """Print the architecture and its total and activated parameter counts."""
    from rich.table import Table

    from lingcoder.model import count_parameters
    from lingcoder.model.config import resolve_model_config

    config = resolve_model_config(config_or_dir, set_ or [])
    config = config.dense() if dense else config
    total, active = count_parameters(config)
    table = Table(title=f"BailingMoe: {config_or_dir}", show_header=False)
    rows = [
        ("total parameters", f"{_billions_or_millions(total)} ({total:,})"),
        ("activated parameters", f"{_billions_or_millions(active)} ({active:,})"),
        ("layers (MoE / dense)", f"{config.num_hidden_layers} "
                                 f"({sum(map(config.is_moe_layer, range(config.num_hidden_layers)))} MoE)"),
        ("hidden / heads / kv heads / head dim",
         f"{config.hidden_size} / {config.num_attention_heads} / {config.num_key_value_heads} / {config.head_dim}"),
        ("experts (routed + shared, top-k)",
         f"{config.num_experts} + {config.num_shared_experts}, top-{config.num_experts_per_tok}"),
        ("expert width / dense width", f"{config.moe_intermediate_size} / {config.intermediate_size}"),
        ("vocab / context", f"{config.vocab_size} / {config.max_position_embeddings}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def _billions_or_millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


# -- generate ----------------------------------------------------------------------------------
@app.command("generate")
def generate_cmd(
    model: Annotated[str | None, typer.Option(help="Checkpoint directory (with tokenizer.json).")] = None,
    prompt: Annotated[list[str] | None, typer.Option(help="A prompt; repeat for a batch.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens to generate at most.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Keep the k most likely tokens (0 = all).")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string; repeatable (escapes such as \\n work).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, ...")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16, ... (default: as stored).")] = None,
    config: Annotated[str | None, _config_option("generate")] = None,
    set_: Annotated[list[str] | None, _set_option("generate", "temperature=0.8")] = None,
) -> None:
    """Generate completions from a checkpoint with a KV cache."""
    from lingcoder.generation.generate import GenerateConfig, generate_from_config

    stop = [s.encode().decode("unicode_escape") for s in stop or []]  # let users type --stop '\n\n'
    cfg = _stage_config(GenerateConfig, "generate", config, set_, model=model, prompts=prompt,
                        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, stop=stop,
                        seed=seed, device=device, dtype=dtype)
    outputs = generate_from_config(cfg)
    for text_in, text_out in zip(cfg.prompts, outputs, strict=True):
        print(text_in + text_out)
        if len(cfg.prompts) > 1:
            print("-" * 40)


# -- serve -------------------------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    model_dir: Annotated[str | None, typer.Argument(help="Checkpoint directory (with tokenizer.json).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (loopback by default).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="LINGCODER_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' on /v1.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, ...")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16, ... (default: as stored).")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Rows (choices) decoded together at most.")] = None,
    served_model_name: Annotated[str | None, typer.Option(help="Model name at /v1/models (default: the dir's "
                                                                "name).")] = None,
    engine: Annotated[str | None, typer.Option(help="lingcoder (built in, the default) or vllm (vLLM's server on "
                                                    "the checkpoint; --device, --max-batch-size do not apply).")]
    = None,
    config: Annotated[str | None, _config_option("serve")] = None,
    set_: Annotated[list[str] | None, _set_option("serve", "port=8001")] = None,
) -> None:
    """Serve a checkpoint over an OpenAI-compatible HTTP API (completions, chat, streaming)."""
    from lingcoder.serve.server import ServeConfig, serve

    serve(_stage_config(ServeConfig, "serve", config, set_, model_dir=model_dir, host=host, port=port,
                        api_key=api_key, device=device, dtype=dtype, max_batch_size=max_batch_size,
                        served_model_name=served_model_name, engine=engine))


# -- recipe ------------------------------------------------------------------------------------
@app.command("recipe")
def recipe_cmd(
    config: Annotated[str, typer.Argument(help="The recipe's TOML file (every stage's tables).")]
    = "configs/tiny.toml",
    out: Annotated[str | None, typer.Option(help="Run directory (default: the config's [run] out).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any config value, e.g. train.seed=1.")]
    = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="Rerun from this stage even if it is complete.")]
    = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    check: Annotated[bool, typer.Option(help="Only validate (type-check) every stage's config and show which "
                                             "stages would run.")] = False,
    verbose: Annotated[bool, typer.Option(help="Show datatrove's logs of the data stages (always in their log "
                                               "files).")] = False,
) -> None:
    """Curate -> tokenizer -> tokenize -> pretrain -> synth -> SFT -> DPO -> eval -> report, resuming."""
    from lingcoder.recipe import recipe

    recipe(config, overrides=set_ or [], out=out, from_stage=from_stage, until=until, check=check,
           console=Console(), verbose=verbose)


@app.command("experiment")
def experiment_cmd(
    run_dir: Annotated[str | None, typer.Argument(help="A recipe run directory (its tokenizer and tokens are "
                                                       "reused).")] = None,
    study: Annotated[str | None, typer.Option(help="A shipped study (moe-vs-dense, routing, inference-k, "
                                                   "curated-vs-raw) or a study TOML file.")] = None,
    quick: Annotated[bool | None, typer.Option("--quick", help="The study's tiny-budget variant (its \\[quick] "
                                                               "table).")] = None,
    seeds: Annotated[int | None, typer.Option(help="Training seeds per arm (default: the study's).")] = None,
    tokens: Annotated[int | None, typer.Option(help="Pretraining tokens per run (default: the study's; 0 = the "
                                                    "recipe's).")] = None,
    eval_tasks: Annotated[int | None, typer.Option(help="HumanEval tasks for pass@1 (studies that measure "
                                                        "it).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
    config: Annotated[str | None, _config_option("experiment")] = None,
    set_: Annotated[list[str] | None, _set_option("experiment", "seeds=5")] = None,
) -> None:
    """Run a study (arms x seeds of training runs) on a recipe run's data: per-arm intervals and paired
    differences into RUN_DIR/experiment/results.json and the report. An interrupted study continues."""
    from lingcoder.experiment import ExperimentConfig, experiment

    experiment(_stage_config(ExperimentConfig, "experiment", config, set_, run_dir=run_dir, study=study,
                             quick=quick, seeds=seeds, tokens=tokens, eval_tasks=eval_tasks, workers=workers),
               console=Console())


# -- tokenizer, tokenize, pretrain -------------------------------------------------------------
tokenizer_app = typer.Typer(help="Train a byte-level BPE tokenizer.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def tokenizer_train_cmd(
    data: Annotated[str | None, typer.Argument(help="Curated directory (or folder/file of Parquet with a "
                                                    "`content` column).")] = None,
    out: Annotated[str | None, typer.Option(help="Directory for tokenizer.json and tokenizer_config.json.")] = None,
    vocab_size: Annotated[int | None, typer.Option(help="Vocabulary size, special tokens and 256 bytes "
                                                        "included.")] = None,
    max_documents: Annotated[int | None, typer.Option(help="Train on at most this many documents (0 = all).")]
    = None,
    config: Annotated[str | None, _config_option("tokenizer")] = None,
    set_: Annotated[list[str] | None, _set_option("tokenizer", "vocab_size=8192")] = None,
) -> None:
    """Train the tokenizer on curated documents and check it round-trips every one of them."""
    from lingcoder.data.tokenize import TokenizerTrainConfig, train_tokenizer_on_parquet

    cfg = _stage_config(TokenizerTrainConfig, "tokenizer", config, set_, data=data, out=out, vocab_size=vocab_size,
                        max_documents=max_documents)
    report = train_tokenizer_on_parquet(cfg)
    console.print(f"tokenizer: {report['vocab_size']} tokens, trained on {report['documents']:,} documents; "
                  f"round trip lossless on {report['round_trip_ok']:,}/{report['documents']:,} -> {cfg.out}")


@app.command("tokenize")
def tokenize_cmd(
    curated: Annotated[str | None, typer.Argument(help="Curated directory: every Parquet folder in it is a "
                                                       "source.")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Directory with tokenizer.json.")] = None,
    out: Annotated[str | None, typer.Option(help="Output tokens directory.")] = None,
    source: Annotated[list[str] | None, typer.Option(help="NAME=PATH instead of discovering sources.")] = None,
    fim_rate: Annotated[float | None, typer.Option(help="Share of documents turned into fill-in-the-middle.")]
    = None,
    spm_rate: Annotated[float | None, typer.Option(help="Among FIM documents, share in SPM order (else PSM).")]
    = None,
    val_fraction: Annotated[float | None, typer.Option(help="Share of documents held out for validation.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the FIM and split draws (per document id).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (0 = all cores).")] = None,
    executor: Annotated[str | None, typer.Option(help="local, ray or slurm (datatrove's executors, as for "
                                                      "curate).")] = None,
    verbose: Annotated[bool | None, typer.Option("--verbose", help="Show datatrove's per-task logs.")] = None,
    config: Annotated[str | None, _config_option("tokenize")] = None,
    set_: Annotated[list[str] | None, _set_option("tokenize", "val_fraction=0.05")] = None,
) -> None:
    """Curated Parquet -> token shards (with document boundaries, FIM and a validation split)."""
    from lingcoder.data.tokenize import TokenizeConfig, tokenize

    cfg = _stage_config(TokenizeConfig, "tokenize", config, set_, curated=curated, tokenizer=tokenizer, out=out,
                        sources=source, fim_rate=fim_rate, spm_rate=spm_rate, val_fraction=val_fraction, seed=seed,
                        workers=workers, executor=executor, verbose=verbose)
    index = tokenize(cfg)
    if index is None:
        console.print(f"submitted to Slurm; {cfg.out}/index.json appears when every stage is done")
        return
    for name, entry in index["sources"].items():
        console.print(f"  {name}: {entry['train']['tokens']:,} train / {entry['val']['tokens']:,} val tokens "
                      f"({entry['train']['documents']:,} / {entry['val']['documents']:,} documents)")
    console.print(f"tokens -> {cfg.out}")


@app.command("pretrain")
def pretrain_cmd(
    config: Annotated[str, typer.Argument(help="TOML config (model, data, train, phases).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set train.micro_batch_size=4.")]
    = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last complete checkpoint.")] = False,
) -> None:
    """Pretrain through the config's phases; run under torchrun for FSDP2 across processes."""
    from lingcoder.train.config import load_pretrain_config
    from lingcoder.train.distributed import shutdown
    from lingcoder.train.pretrain import pretrain

    try:
        pretrain(load_pretrain_config(config, set_ or []), resume=resume)
    finally:
        shutdown()


@app.command("sft")
def sft_cmd(
    config: Annotated[str, typer.Argument(help="TOML config with an \\[sft] table (other tables are ignored).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set sft.epochs=3.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last complete checkpoint.")] = False,
) -> None:
    """Supervised fine-tuning on chat records, the loss on the assistant's tokens; torchrun for FSDP2."""
    from lingcoder.train.distributed import shutdown
    from lingcoder.train.sft import load_sft_config, sft

    try:
        sft(load_sft_config(config, set_ or []), resume=resume)
    finally:
        shutdown()


@app.command("dpo")
def dpo_cmd(
    config: Annotated[str, typer.Argument(help="TOML config with a \\[dpo] table (other tables are ignored).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set dpo.beta=0.05.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last complete checkpoint.")] = False,
) -> None:
    """Direct preference optimisation on (prompt, chosen, rejected) records; torchrun for FSDP2."""
    from lingcoder.train.distributed import shutdown
    from lingcoder.train.dpo import dpo, load_dpo_config

    try:
        dpo(load_dpo_config(config, set_ or []), resume=resume)
    finally:
        shutdown()


# -- curate ----------------------------------------------------------------------------------------
@app.command()
def curate(
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Repositories, directories of repositories, git checkouts, .jsonl or .parquet "
                       "files. None: this interpreter's standard library and installed packages."),
    ] = None,
    out: Annotated[str | None, typer.Option(help="Output directory (layout: lingcoder.data.curate).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: all cores).")] = None,
    executor: Annotated[str | None, typer.Option(help="local, ray or slurm (default: local).")] = None,
    benchmark: Annotated[
        list[str] | None, typer.Option(help="Extra benchmark JSONL to decontaminate against (repeatable).")
    ] = None,
    classifier_data: Annotated[
        str | None, typer.Option(help="Labelled JSONL (content, label) to train the quality classifier.")
    ] = None,
    quiet: Annotated[bool | None, typer.Option("--quiet", help="Print only the funnel table.")] = None,
    verbose: Annotated[bool | None, typer.Option(help="Also show datatrove's logs (always in OUT/_work/logs).")]
    = None,
    config: Annotated[str | None, _config_option("curate")] = None,
    set_: Annotated[list[str] | None, _set_option("curate", "rules.max_line_length=2000")] = None,
) -> None:
    """Curate code data: filter, redact, deduplicate, decontaminate, score, build repository samples."""
    from lingcoder.data.curate import CurateConfig
    from lingcoder.data.curate import curate as run_curate

    run_curate(_stage_config(
        CurateConfig, "curate", config, set_, sources=sources, out=out, workers=workers,
        executor={"kind": executor} if executor is not None else None, benchmarks=benchmark,
        classifier_data=classifier_data, quiet=quiet, verbose=verbose,
    ))


# -- eval ------------------------------------------------------------------------------------------
@app.command("eval")
def eval_command(
    out: Annotated[str | None, typer.Option(help="Output directory: results.jsonl, summary.json (resumable).")]
    = None,
    samples: Annotated[str | None, typer.Option(help="Samples JSONL (task_id, completion) to judge.")] = None,
    benchmark: Annotated[list[str] | None, typer.Option(
        help="Benchmark (repeatable): humaneval, humaneval+, mbpp, mbpp+, multipl-e, mbxp, livecodebench, "
             "bigcodebench-complete, bigcodebench-instruct, cruxeval-i, cruxeval-o, humanevalfix, ds-1000, spider, "
             "humaneval-infill-single, humaneval-infill-multi, humaneval-infill-random.")] = None,
    benchmark_file: Annotated[list[str] | None, typer.Option(
        help="Local benchmark file (all but humaneval); repeatable, one per benchmark, or NAME=PATH.")] = None,
    since: Annotated[str | None, typer.Option(help="LiveCodeBench: contests on or after this date (YYYY-MM-DD).")]
    = None,
    until: Annotated[str | None, typer.Option(help="LiveCodeBench: contests on or before this date.")] = None,
    fim_mode: Annotated[str | None, typer.Option(help="HumanEval-infilling prompt order: psm or spm.")] = None,
    backend: Annotated[str | None, typer.Option(help="Generate samples first: checkpoint, hf, openai, "
                                                                  "vllm (serves the checkpoint).")] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint dir, HF model, or endpoint model name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://h:8000/v1.")] = None,
    device: Annotated[str | None, typer.Option(help="Device for the checkpoint and hf backends.")] = None,
    trust_remote_code: Annotated[bool | None, typer.Option(
        "--trust-remote-code", help="hf backend: run the model's own code (auto_map); only for models you trust.")]
    = None,
    mode: Annotated[str | None, typer.Option(help="base (completion prompts) or instruct (chat, fenced code).")]
    = None,
    n: Annotated[int | None, typer.Option(help="Samples per task.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens per completion at most.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable); default: benchmark's.")] = None,
    task: Annotated[list[str] | None, typer.Option(help="Generate for this task only (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Generate for the benchmark's first N tasks only.")] = None,
    k: Annotated[str | None, typer.Option(help="Comma-separated k values for pass@k (default 1,10,100).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel programs (default: CPU cores).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Fixed per-program timeout (default: adaptive).")] = None,
    min_timeout: Annotated[float | None, typer.Option(help="Adaptive timeout floor, seconds.")] = None,
    timeout_factor: Annotated[float | None, typer.Option(help="Adaptive timeout: x reference solution time.")]
    = None,
    namespaces: Annotated[bool | None, typer.Option("--namespaces/--no-namespaces",
                                                    help="Network/PID namespaces (default: on).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: on).")]
    = None,
    config: Annotated[str | None, _config_option("eval")] = None,
    set_: Annotated[list[str] | None, _set_option("eval", "n=10")] = None,
) -> None:
    """Judge samples (or generate, then judge) by sandboxed execution; print pass@k."""
    from lingcoder.evaluate.runner import EvalConfig, run_eval

    ks = None
    if k is not None:
        try:
            ks = [int(x) for x in k.split(",") if x.strip()]
        except ValueError:
            raise LingcoderError(f"--k {k!r}: expected comma-separated integers, e.g. 1,10") from None
    run_eval(_stage_config(
        EvalConfig, "eval", config, set_, out=out, samples=samples, benchmark=_one_or_list(benchmark),
        benchmark_file=_one_or_list(benchmark_file), since=_day(since, "--since"), until=_day(until, "--until"),
        fim_mode=fim_mode, backend=backend, model=model, base_url=base_url, device=device,
        trust_remote_code=trust_remote_code, mode=mode, n=n,
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=stop, tasks=task, limit=limit, k=ks,
        workers=workers, timeout=timeout, min_timeout=min_timeout, timeout_factor=timeout_factor,
        use_namespaces=namespaces, progress=progress,
    ))


def _one_or_list(values: list[str] | None) -> str | list[str] | None:
    """A repeatable flag given once is a plain value (as the config file would say it)."""
    return values[0] if values and len(values) == 1 else values


def _day(text: str | None, flag: str):
    import datetime

    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise LingcoderError(f"{flag} {text!r}: expected a date as YYYY-MM-DD") from None


# -- report ----------------------------------------------------------------------------------------
@app.command("report")
def report_command(
    run_dir: Annotated[str, typer.Argument(help="A run directory (as `lingcoder recipe` writes it).")],
    out: Annotated[str | None, typer.Option(help="Output HTML file (default: RUN_DIR/report.html).")] = None,
) -> None:
    """Write a self-contained HTML report of a run: curation, training, experts, evaluation, model card."""
    from lingcoder.report import write_report

    path = write_report(run_dir, out)
    console.print(f"report -> {path}", soft_wrap=True)


@app.command("expert-usage")
def expert_usage_command(
    run_dir: Annotated[str | None, typer.Argument(help="A run directory (as `lingcoder recipe` writes it).")] = None,
    documents: Annotated[int | None, typer.Option(help="Held-out documents per language (default 32).")] = None,
    tokens: Annotated[int | None, typer.Option(help="Tokens of each document (default 512).")] = None,
    device: Annotated[str | None, typer.Option(help="Device to run the final checkpoint on (default cpu).")] = None,
    config: Annotated[str | None, _config_option("expert_usage")] = None,
    set_: Annotated[list[str] | None, _set_option("expert_usage", "max_tokens=256")] = None,
) -> None:
    """Count which experts each language uses in the run's final checkpoint -> RUN_DIR/expert_usage.json."""
    from lingcoder.expert_usage import ExpertUsageConfig, expert_usage

    path = expert_usage(_stage_config(ExpertUsageConfig, "expert_usage", config, set_, run_dir=run_dir,
                                      max_documents=documents, max_tokens=tokens, device=device))
    console.print(f"expert usage -> {path}", soft_wrap=True)


# -- synth -----------------------------------------------------------------------------------------
@app.command("synth")
def synth_command(
    curated: Annotated[str | None, typer.Argument(help="Curated directory (`lingcoder curate` output).")] = None,
    out: Annotated[str | None, typer.Option(help="Output directory: sft.jsonl, dpo.jsonl, stats.json, "
                                                 "dropped.jsonl.")] = None,
    teacher_url: Annotated[str | None, typer.Option(help="Teacher endpoint (OpenAI-compatible, .../v1).")] = None,
    teacher_model: Annotated[str | None, typer.Option(help="Teacher model name at that endpoint.")] = None,
    teacher_api_key: Annotated[str | None, typer.Option(help="Teacher API key (default $OPENAI_API_KEY).")] = None,
    teacher_mode: Annotated[list[str] | None, typer.Option(help="magpie, evolved (repeatable; default both).")]
    = None,
    teacher_problems: Annotated[int | None, typer.Option(help="Teacher attempts per mode.")] = None,
    teacher_temperature: Annotated[float | None, typer.Option(help="Teacher sampling temperature (> 0).")] = None,
    teacher_max_tokens: Annotated[int | None, typer.Option(help="Teacher reply length limit.")] = None,
    magpie_prefix: Annotated[
        str | None, typer.Option(help="The teacher's chat template up to a user turn (default: Ling's).")
    ] = None,
    magpie_stop: Annotated[
        list[str] | None, typer.Option(help="Stop string ending the user turn (repeatable).")
    ] = None,
    candidates_url: Annotated[
        str | None, typer.Option(help="Endpoint whose answers make DPO pairs (default: program mutations).")
    ] = None,
    candidates_model: Annotated[str | None, typer.Option(help="Model name at --candidates-url.")] = None,
    candidates_api_key: Annotated[str | None, typer.Option(help="API key for --candidates-url.")] = None,
    candidates_checkpoint: Annotated[
        str | None, typer.Option(help="Checkpoint directory whose answers make DPO pairs.")
    ] = None,
    candidates_engine: Annotated[str | None, typer.Option(help="Runs --candidates-checkpoint: lingcoder (default) "
                                                                "or vllm.")] = None,
    n_candidates: Annotated[int | None, typer.Option(help="Answers (or mutants) tried per problem; 0 = no DPO.")]
    = None,
    candidates_temperature: Annotated[float | None, typer.Option(help="Sampling temperature of the answers.")]
    = None,
    candidates_max_tokens: Annotated[int | None, typer.Option(help="Answer length limit.")] = None,
    device: Annotated[str | None, typer.Option(help="Device for --candidates-checkpoint.")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel parsers and programs (default: CPU cores).")] = None,
    max_problems: Annotated[int | None, typer.Option(help="Verify a seeded sample of this many problems "
                                                          "(0 = all).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every sampled choice.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per program run.")] = None,
    benchmark: Annotated[
        list[str] | None, typer.Option(help="Extra benchmark JSONL to decontaminate against (repeatable).")
    ] = None,
    config: Annotated[str | None, _config_option("synth")] = None,
    set_: Annotated[list[str] | None, _set_option("synth", "max_problems=100")] = None,
) -> None:
    """Execution-verified synthetic SFT and DPO data from the curated corpus (and a teacher model)."""
    from lingcoder.synth.pipeline import SynthConfig, synth
    from lingcoder.synth.records import print_summary

    stats = synth(_stage_config(
        SynthConfig, "synth", config, set_, curated=curated, out=out, teacher_url=teacher_url,
        teacher_model=teacher_model, teacher_api_key=teacher_api_key, teacher_modes=teacher_mode,
        teacher_problems=teacher_problems, teacher_temperature=teacher_temperature,
        teacher_max_tokens=teacher_max_tokens, magpie_prefix=magpie_prefix, magpie_stop=magpie_stop,
        candidates_url=candidates_url, candidates_model=candidates_model, candidates_api_key=candidates_api_key,
        candidates_checkpoint=candidates_checkpoint, candidates_engine=candidates_engine, n_candidates=n_candidates,
        candidates_temperature=candidates_temperature, candidates_max_tokens=candidates_max_tokens, device=device,
        workers=workers, max_problems=max_problems, seed=seed, timeout=timeout, benchmarks=benchmark,
    ))
    print_summary(stats, console)
