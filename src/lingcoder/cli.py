"""The `lingcoder` command line: one typer app, each subcommand a thin wrapper over a library call.

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
    config_or_dir: str = typer.Argument(..., help="A preset (tiny, small, ling-coder-lite), a TOML config, "
                                                  "or a checkpoint directory."),
    set_: list[str] = typer.Option([], "--set", help="Override a model field, e.g. --set num_experts=8."),
    dense: bool = typer.Option(False, help="Describe the dense twin (same activated parameters)."),
) -> None:
    """Print the architecture and its total and activated parameter counts."""
    from rich.table import Table

    from lingcoder.model import count_parameters
    from lingcoder.model.config import resolve_model_config

    config = resolve_model_config(config_or_dir, set_)
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
    model: str = typer.Option(..., "--model", help="Checkpoint directory (with tokenizer.json)."),
    prompt: list[str] = typer.Option(..., "--prompt", help="A prompt; repeat for a batch."),
    max_new_tokens: int = typer.Option(128, help="Tokens to generate at most."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    top_k: int = typer.Option(0, help="Keep the k most likely tokens (0 = all)."),
    stop: list[str] = typer.Option([], "--stop", help="Stop string; repeatable."),
    seed: int | None = typer.Option(None, help="Sampling seed."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    dtype: str | None = typer.Option(None, help="float32, bfloat16, ... (default: as stored)."),
) -> None:
    """Generate completions from a checkpoint with a KV cache."""
    from lingcoder.serve.generate import generate, load_for_generation

    lm, tokenizer = load_for_generation(model, device=device, dtype=dtype)
    stop = [s.encode().decode("unicode_escape") for s in stop]  # let users type --stop '\n\n'
    outputs = generate(lm, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                       top_p=top_p, top_k=top_k, stop=stop, seed=seed)
    for text_in, text_out in zip(prompt, outputs, strict=True):
        print(text_in + text_out)
        if len(prompt) > 1:
            print("-" * 40)


# -- serve -------------------------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    model_dir: str = typer.Argument(..., help="Checkpoint directory (with tokenizer.json)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: str | None = typer.Option(None, envvar="LINGCODER_API_KEY",
                                        help="Require 'Authorization: Bearer KEY' on /v1."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    dtype: str | None = typer.Option(None, help="float32, bfloat16, ... (default: as stored)."),
    max_batch_size: int = typer.Option(32, help="Rows (choices) decoded together at most."),
    served_model_name: str | None = typer.Option(None, help="Model name at /v1/models (default: the dir's name)."),
    engine: str = typer.Option("lingcoder", help="lingcoder (built in) or vllm (vLLM's server on the checkpoint; "
                                                 "--device, --max-batch-size do not apply)."),
) -> None:
    """Serve a checkpoint over an OpenAI-compatible HTTP API (completions, chat, streaming)."""
    if engine == "vllm":
        from lingcoder.vllm_server import serve_with_vllm

        serve_with_vllm(model_dir, host=host, port=port, api_key=api_key, dtype=dtype,
                        served_model_name=served_model_name)
        return
    if engine != "lingcoder":
        raise LingcoderError(f"--engine {engine!r}: unknown (known: lingcoder, vllm)")
    from lingcoder.serve.server import serve

    serve(model_dir, host=host, port=port, api_key=api_key, device=device, dtype=dtype,
          max_batch_size=max_batch_size, served_model_name=served_model_name)


# -- recipe ------------------------------------------------------------------------------------
@app.command("recipe")
def recipe_cmd(
    config: str = typer.Argument("configs/tiny.toml", help="The recipe's TOML file (every stage's tables)."),
    out: str = typer.Option(None, "--out", help="Run directory (default: the config's [run] out)."),
    set_: list[str] = typer.Option([], "--set", help="Override any config value, e.g. train.seed=1."),
    from_stage: str = typer.Option(None, "--from", help="Rerun from this stage even if it is complete."),
    until: str = typer.Option(None, "--until", help="Stop after this stage."),
    check: bool = typer.Option(False, "--check", help="Only validate the config and show which stages would run."),
) -> None:
    """Curate -> tokenizer -> tokenize -> pretrain -> synth -> SFT -> DPO -> eval -> report, resuming."""
    from lingcoder.recipe import recipe

    recipe(config, overrides=set_, out=out, from_stage=from_stage, until=until, check=check, console=Console())


@app.command("experiment")
def experiment_cmd(
    run_dir: str = typer.Argument(..., help="A recipe run directory (its tokenizer and tokens are reused)."),
    seeds: int = typer.Option(3, help="Training seeds per arm."),
    scale: float = typer.Option(1.0, help="Multiply every phase's token budget (e.g. 0.5 for a quicker look)."),
    eval_tasks: int = typer.Option(20, help="HumanEval tasks for pass@1 in the curated-vs-raw part."),
    part: list[str] = typer.Option(["moe_vs_dense", "curated_vs_raw"], help="Which comparison(s) to run."),
) -> None:
    """MoE vs dense and curated vs raw data, at small scale, on a recipe run's data; results for the report."""
    from lingcoder.experiment import experiment

    experiment(run_dir, seeds=seeds, scale=scale, eval_tasks=eval_tasks, parts=part, console=Console())


# -- tokenizer, tokenize, pretrain -------------------------------------------------------------
tokenizer_app = typer.Typer(help="Train a byte-level BPE tokenizer.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def tokenizer_train_cmd(
    data: str = typer.Argument(..., help="Curated directory (or folder/file of Parquet with a `content` column)."),
    out: str = typer.Option(..., "--out", help="Directory for tokenizer.json and tokenizer_config.json."),
    vocab_size: int = typer.Option(4096, help="Vocabulary size, special tokens and 256 bytes included."),
    max_documents: int = typer.Option(0, help="Train on at most this many documents (0 = all)."),
) -> None:
    """Train the tokenizer on curated documents and check it round-trips every one of them."""
    from lingcoder.data.tokenize import train_tokenizer_on_parquet

    report = train_tokenizer_on_parquet(data, out, vocab_size=vocab_size, max_documents=max_documents)
    console.print(f"tokenizer: {report['vocab_size']} tokens, trained on {report['documents']:,} documents; "
                  f"round trip lossless on {report['round_trip_ok']:,}/{report['documents']:,} -> {out}")


@app.command("tokenize")
def tokenize_cmd(
    curated: str = typer.Argument(None, help="Curated directory: every Parquet folder in it is a source."),
    tokenizer: str = typer.Option(..., "--tokenizer", help="Directory with tokenizer.json."),
    out: str = typer.Option(..., "--out", help="Output tokens directory."),
    source: list[str] = typer.Option([], "--source", help="NAME=PATH instead of discovering sources."),
    fim_rate: float = typer.Option(0.5, help="Share of documents turned into fill-in-the-middle."),
    spm_rate: float = typer.Option(0.5, help="Among FIM documents, share in SPM order (else PSM)."),
    val_fraction: float = typer.Option(0.01, help="Share of documents held out for validation."),
    seed: int = typer.Option(0, help="Seed of the FIM and split draws (per document id)."),
    workers: int = typer.Option(0, help="Local worker processes (0 = all cores)."),
    executor: str = typer.Option("local", help="local, ray or slurm (datatrove's executors, as for curate)."),
    verbose: bool = typer.Option(False, help="Show datatrove's per-task logs."),
) -> None:
    """Curated Parquet -> token shards (with document boundaries, FIM and a validation split)."""
    import os

    from lingcoder.data.fim import FimConfig
    from lingcoder.data.tokenize import tokenize

    index = tokenize(curated, tokenizer, out, sources=source, fim=FimConfig(fim_rate, spm_rate, seed),
                     val_fraction=val_fraction, seed=seed, workers=workers or os.cpu_count() or 1,
                     executor=executor, quiet=not verbose)
    if index is None:
        console.print(f"submitted to Slurm; {out}/index.json appears when every stage is done")
        return
    for name, entry in index["sources"].items():
        console.print(f"  {name}: {entry['train']['tokens']:,} train / {entry['val']['tokens']:,} val tokens "
                      f"({entry['train']['documents']:,} / {entry['val']['documents']:,} documents)")
    console.print(f"tokens -> {out}")


@app.command("pretrain")
def pretrain_cmd(
    config: str = typer.Argument(..., help="TOML config (model, data, train, phases)."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. --set train.micro_batch_size=4."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
) -> None:
    """Pretrain through the config's phases; run under torchrun for FSDP2 across processes."""
    from lingcoder.train.config import load_pretrain_config
    from lingcoder.train.distributed import shutdown
    from lingcoder.train.loop import pretrain

    try:
        pretrain(load_pretrain_config(config, set_), resume=resume)
    finally:
        shutdown()


@app.command("sft")
def sft_cmd(
    config: str = typer.Argument(..., help="TOML config with an [sft] table (other tables are ignored)."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. --set sft.epochs=3."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
) -> None:
    """Supervised fine-tuning on chat records, the loss on the assistant's tokens; torchrun for FSDP2."""
    from lingcoder.train.distributed import shutdown
    from lingcoder.train.sft import load_sft_config, sft

    try:
        sft(load_sft_config(config, set_), resume=resume)
    finally:
        shutdown()


@app.command("dpo")
def dpo_cmd(
    config: str = typer.Argument(..., help="TOML config with a [dpo] table (other tables are ignored)."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. --set dpo.beta=0.05."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
) -> None:
    """Direct preference optimisation on (prompt, chosen, rejected) records; torchrun for FSDP2."""
    from lingcoder.train.distributed import shutdown
    from lingcoder.train.dpo import dpo, load_dpo_config

    try:
        dpo(load_dpo_config(config, set_), resume=resume)
    finally:
        shutdown()


# -- curate ----------------------------------------------------------------------------------------
@app.command()
def curate(
    out: Annotated[str, typer.Option("--out", help="Output directory (layout: lingcoder.data.curate).")],
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Repositories, directories of repositories, git checkouts, .jsonl or .parquet "
                       "files. None: this interpreter's standard library and installed packages."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: all cores).")] = None,
    executor: Annotated[str, typer.Option(help="local, ray or slurm.")] = "local",
    benchmark: Annotated[
        list[str] | None, typer.Option(help="Extra benchmark JSONL to decontaminate against (repeatable).")
    ] = None,
    classifier_data: Annotated[
        str | None, typer.Option(help="Labelled JSONL (content, label) to train the quality classifier.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="TOML file of thresholds (CurateConfig).")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a threshold, e.g. rules.max_line_length=2000.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Fewer progress logs (the funnel is still printed).")] = False,
) -> None:
    """Curate code data: filter, redact, deduplicate, decontaminate, score, build repository samples."""
    from lingcoder.data.curate import curate as run_curate

    run_curate(sources, out, workers, executor, benchmark, classifier_data, config, overrides, quiet)


# -- eval ------------------------------------------------------------------------------------------
@app.command("eval")
def eval_command(
    out: Annotated[str, typer.Option(help="Output directory: results.jsonl, summary.json (resumable).")],
    samples: Annotated[str | None, typer.Option(help="Samples JSONL (task_id, completion) to judge.")] = None,
    benchmark: Annotated[
        str, typer.Option(help="humaneval, humaneval+, mbpp, mbpp+, multipl-e, mbxp.")
    ] = "humaneval",
    benchmark_file: Annotated[
        str | None, typer.Option(help="Local benchmark file (all but humaneval).")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Generate samples first: checkpoint, hf, openai, vllm (serves the checkpoint).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Checkpoint dir, HF model, or endpoint model name.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://h:8000/v1.")
    ] = None,
    device: Annotated[str, typer.Option(help="Device for the checkpoint and hf backends.")] = "cpu",
    mode: Annotated[
        str, typer.Option(help="base (completion prompts) or instruct (chat, fenced code).")
    ] = "base",
    n: Annotated[int, typer.Option(help="Samples per task.")] = 1,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    max_tokens: Annotated[int, typer.Option()] = 512,
    stop: Annotated[
        list[str] | None, typer.Option(help="Stop string (repeatable); default: benchmark's.")
    ] = None,
    task: Annotated[list[str] | None, typer.Option(help="Generate for this task only (repeatable).")] = None,
    k: Annotated[str, typer.Option(help="Comma-separated k values for pass@k.")] = "1,10,100",
    workers: Annotated[int | None, typer.Option(help="Parallel programs (default: CPU cores).")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Fixed per-program timeout (default: adaptive).")
    ] = None,
    min_timeout: Annotated[float, typer.Option(help="Adaptive timeout floor, seconds.")] = 4.0,
    timeout_factor: Annotated[float, typer.Option(help="Adaptive timeout: x reference solution time.")] = 4.0,
    no_namespaces: Annotated[
        bool, typer.Option("--no-namespaces", help="No network/PID namespaces.")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Judge samples (or generate, then judge) by sandboxed execution; print pass@k."""
    from lingcoder.evaluate.runner import run_eval

    try:
        ks = [int(x) for x in k.split(",") if x.strip()]
    except ValueError:
        raise LingcoderError(f"--k {k!r}: expected comma-separated integers, e.g. 1,10") from None
    run_eval(
        out,
        samples=samples,
        benchmark=benchmark,
        benchmark_file=benchmark_file,
        backend=backend,
        model=model,
        base_url=base_url,
        device=device,
        mode=mode,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=stop,
        tasks=task,
        k=ks,
        workers=workers,
        timeout=timeout,
        min_timeout=min_timeout,
        timeout_factor=timeout_factor,
        use_namespaces=not no_namespaces,
        progress=not no_progress,
    )


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
    run_dir: Annotated[str, typer.Argument(help="A run directory (as `lingcoder recipe` writes it).")],
    documents: Annotated[int, typer.Option(help="Held-out documents per language.")] = 32,
    tokens: Annotated[int, typer.Option(help="Tokens of each document.")] = 512,
    device: Annotated[str, typer.Option(help="Device to run the final checkpoint on.")] = "cpu",
) -> None:
    """Count which experts each language uses in the run's final checkpoint -> RUN_DIR/expert_usage.json."""
    from lingcoder.expert_usage import expert_usage

    path = expert_usage(run_dir, max_documents=documents, max_tokens=tokens, device=device)
    console.print(f"expert usage -> {path}", soft_wrap=True)


# -- synth -----------------------------------------------------------------------------------------
@app.command("synth")
def synth_command(
    curated: Annotated[str, typer.Argument(help="Curated directory (`lingcoder curate` output).")],
    out: Annotated[str, typer.Option(help="Output directory: sft.jsonl, dpo.jsonl, stats.json, dropped.jsonl.")],
    teacher_url: Annotated[str | None, typer.Option(help="Teacher endpoint (OpenAI-compatible, .../v1).")] = None,
    teacher_model: Annotated[str | None, typer.Option(help="Teacher model name at that endpoint.")] = None,
    teacher_api_key: Annotated[str | None, typer.Option(help="Teacher API key (default $OPENAI_API_KEY).")] = None,
    teacher_mode: Annotated[list[str] | None, typer.Option(help="magpie, evolved (repeatable; default both).")] = None,
    teacher_problems: Annotated[int, typer.Option(help="Teacher attempts per mode.")] = 16,
    teacher_temperature: Annotated[float, typer.Option(help="Teacher sampling temperature (> 0).")] = 0.8,
    teacher_max_tokens: Annotated[int, typer.Option(help="Teacher reply length limit.")] = 1024,
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
    n_candidates: Annotated[int, typer.Option(help="Answers (or mutants) tried per problem; 0 = no DPO.")] = 4,
    candidates_temperature: Annotated[float, typer.Option(help="Sampling temperature of the answers.")] = 0.8,
    candidates_max_tokens: Annotated[int, typer.Option(help="Answer length limit.")] = 512,
    device: Annotated[str, typer.Option(help="Device for --candidates-checkpoint.")] = "cpu",
    workers: Annotated[int | None, typer.Option(help="Parallel parsers and programs (default: CPU cores).")] = None,
    max_problems: Annotated[int, typer.Option(help="Verify a seeded sample of this many problems (0 = all).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of every sampled choice.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds per program run.")] = 10.0,
    benchmark: Annotated[
        list[str] | None, typer.Option(help="Extra benchmark JSONL to decontaminate against (repeatable).")
    ] = None,
) -> None:
    """Execution-verified synthetic SFT and DPO data from the curated corpus (and a teacher model)."""
    from lingcoder.synth.pipeline import synth
    from lingcoder.synth.records import print_summary

    stats = synth(
        curated, out, teacher_url=teacher_url, teacher_model=teacher_model, teacher_api_key=teacher_api_key,
        teacher_modes=teacher_mode, teacher_problems=teacher_problems, teacher_temperature=teacher_temperature,
        teacher_max_tokens=teacher_max_tokens, magpie_prefix=magpie_prefix, magpie_stop=magpie_stop,
        candidates_url=candidates_url, candidates_model=candidates_model,
        candidates_api_key=candidates_api_key, candidates_checkpoint=candidates_checkpoint,
        n_candidates=n_candidates, candidates_temperature=candidates_temperature,
        candidates_max_tokens=candidates_max_tokens, device=device, workers=workers, max_problems=max_problems,
        seed=seed, timeout=timeout, benchmarks=benchmark,
    )
    print_summary(stats, console)
