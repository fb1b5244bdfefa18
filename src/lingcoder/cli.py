"""The `lingcoder` command line: one typer app, each subcommand a thin wrapper over a library call.

Library functions raise `LingcoderError` for bad input; `main` prints those as one line and exits 2,
so users never see a traceback for a mistake of theirs.
"""

from __future__ import annotations

import sys

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


# -- demo --------------------------------------------------------------------------------------
@app.command("demo")
def demo_cmd(
    out: str = typer.Option("runs/demo", help="Output directory."),
    steps: int = typer.Option(60, help="Training steps."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Train the tiny model on embedded stdlib code, save, reload and generate (CPU, ~1-2 minutes)."""
    from lingcoder.demo import run_demo

    run_demo(out, steps=steps, seed=seed)
