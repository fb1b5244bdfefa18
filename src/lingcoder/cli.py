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
