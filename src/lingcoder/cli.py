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
