"""The `lingcoder` command line: one typer app, each subcommand a thin wrapper over a library call.

Library functions raise `LingcoderError` for bad input; `main` prints those as one line and exits 2,
so users never see a traceback for a mistake of theirs.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

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
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


@app.command()
def version() -> None:
    """Print the lingcoder version."""
    from lingcoder import __version__

    print(__version__)


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
        str | None, typer.Option(help="Generate samples first: checkpoint, hf, openai.")
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
