"""The `lingcoder` command line: one typer app, each subcommand a thin wrapper over a library call.

Library functions raise `LingcoderError` for bad input; `main` prints those as one line and exits 2,
so users never see a traceback for a mistake of theirs.
"""

from __future__ import annotations

import sys

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
    sources: list[str] = typer.Argument(None, help="Repositories, directories of repositories, git checkouts, "
                                        ".jsonl or .parquet files. None: this interpreter's stdlib and packages."),
    out: str = typer.Option(..., "--out", help="Output directory (see `lingcoder.data.curate` for its layout)."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes (default: all cores)."),
    executor: str = typer.Option("local", "--executor", help="local, ray or slurm."),
    benchmark: list[str] = typer.Option(None, "--benchmark", help="Extra benchmark JSONL to decontaminate against."),
    classifier_data: str = typer.Option(None, "--classifier-data", help="Labelled JSONL to train the quality "
                                        "classifier (content, label)."),
    config: str = typer.Option(None, "--config", help="TOML file of thresholds (CurateConfig)."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a threshold, e.g. rules.max_line_length=2000."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress logs."),
) -> None:
    """Curate code data: filter, redact, deduplicate, decontaminate, score, build repository samples."""
    from lingcoder.data.curate import curate as run_curate

    run_curate(sources or None, out, workers, executor, benchmark or None, classifier_data, config,
               overrides or None, quiet)
