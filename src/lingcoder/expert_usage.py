"""`lingcoder expert-usage RUN`: which experts each programming language uses. The run's final
checkpoint runs over held-out curated documents, grouped by their `language`, counting the tokens
each MoE layer routes to each expert; the counts go to RUN/expert_usage.json, which the report draws.

Held-out documents are the curated file-level samples that `lingcoder tokenize` put in the
validation split (`lingcoder.data.split`, with the seed and fraction of tokens/index.json); without
a tokens index every file-level sample is used, and the result says so. The JSON is recomputed only
when the checkpoint's files or the settings change.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from lingcoder.data.shards import TokenIndex
from lingcoder.data.split import is_held_out
from lingcoder.errors import LingcoderError
from lingcoder.generation.generate import load_for_generation
from lingcoder.runfiles import (
    EXPERT_USAGE,
    final_checkpoint,
    no_expert_usage_reason,
    read_parquet_rows,
    weights_signature,
)


def held_out_documents(curated: Path, tokens: Path | None, max_documents: int) -> tuple[dict[str, list[str]], str]:
    """(language -> contents of up to `max_documents` held-out documents, lowest ids first; how they
    were chosen)."""
    rows = read_parquet_rows(curated / "file", ["id", "language", "content"])
    if tokens is not None and (tokens / "index.json").is_file():
        index = TokenIndex(tokens).data
        fraction, seed = float(index.get("val_fraction", 0.0)), int(index.get("seed", 0))
        rows = [r for r in rows if is_held_out(r["id"], fraction, seed)]
        how = f"held out by the tokens/ validation split (val_fraction {fraction:g}, seed {seed})"
    else:
        how = "all curated file-level documents (no tokens/index.json to tell which were held out)"
    by_language: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in rows:
        by_language[r["language"]].append((r["id"], r["content"]))
    chosen = {lang: [text for _, text in sorted(docs)[:max_documents]] for lang, docs in sorted(by_language.items())}
    return chosen, how


@torch.no_grad()
def expert_usage_by_language(checkpoint: str | Path, documents: dict[str, list[str]], *, max_tokens: int = 512,
                             device: str = "cpu") -> dict:
    """Run `checkpoint` on each language's documents (one at a time, the first `max_tokens` tokens)
    and count routed tokens per MoE layer and expert.

    Returns {"checkpoint", "moe_layers": [layer index], "num_experts", "languages": {language:
    {"documents", "tokens", "tokens_per_expert": [[count per expert] per MoE layer]}}}.
    """
    model, tokenizer = load_for_generation(checkpoint, device=device)
    config = model.config
    moe_layers = [i for i in range(config.num_hidden_layers) if config.is_moe_layer(i)]
    if not moe_layers:
        raise LingcoderError(f"{checkpoint}: a dense model has no experts to count")
    limit = min(max_tokens, config.max_position_embeddings)
    languages = {}
    for language, texts in documents.items():
        counts_LE = torch.zeros(len(moe_layers), config.num_experts, dtype=torch.long)
        tokens = 0
        for text in texts:
            ids = tokenizer.encode(text).ids[:limit]
            if not ids:
                continue
            out = model(torch.tensor([ids], device=device))
            counts_LE += out.tokens_per_expert.long().cpu()
            tokens += len(ids)
        languages[language] = {"documents": len(texts), "tokens": tokens, "tokens_per_expert": counts_LE.tolist()}
    return {"checkpoint": str(checkpoint), "moe_layers": moe_layers, "num_experts": config.num_experts,
            "languages": languages}


def cached_expert_usage(run: Path, checkpoint: Path, *, max_documents: int = 32, max_tokens: int = 512,
                        device: str = "cpu") -> dict:
    """`expert_usage_by_language` of the run's held-out curated documents, kept in RUN/expert_usage.json
    and computed again only when the checkpoint's weights or the settings change (adds "key": what it
    was computed from, and "selection": how the documents were chosen)."""
    key = {"checkpoint": str(checkpoint.resolve().relative_to(run.resolve())), "max_documents": max_documents,
           "max_tokens": max_tokens, "weights": weights_signature(checkpoint)}
    path = run / EXPERT_USAGE
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except json.JSONDecodeError:  # our own file, half written: compute it again
            cached = {}
        if cached.get("key") == key:
            return cached
    documents, how = held_out_documents(run / "curated", run / "tokens", max_documents)
    usage = expert_usage_by_language(checkpoint, documents, max_tokens=max_tokens, device=device)
    usage.update(key=key, selection=how, checkpoint=key["checkpoint"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(usage, indent=1) + "\n")
    os.replace(tmp, path)
    return usage


@dataclass
class ExpertUsageConfig:
    """`lingcoder expert-usage` (the recipe's `[expert_usage]` table)."""

    run_dir: str  # a run directory (as `lingcoder recipe` writes it)
    max_documents: int = 32  # held-out documents per language
    max_tokens: int = 512  # tokens of each document
    device: str = "cpu"  # to run the final checkpoint on


def expert_usage(config: ExpertUsageConfig) -> Path:
    """Count the experts each language uses in the final checkpoint of `run_dir`; return the path of
    RUN/expert_usage.json. An error says why when there is nothing to count (no checkpoint, no
    curated documents, a dense model)."""
    run_dir, max_documents, max_tokens, device = config.run_dir, config.max_documents, config.max_tokens, config.device
    run = Path(run_dir)
    if not run.is_dir():
        raise LingcoderError(f"{run_dir}: no such run directory")
    if max_documents < 1 or max_tokens < 1:
        raise LingcoderError(f"max_documents and max_tokens must be >= 1, got {max_documents} and {max_tokens}")
    reason = no_expert_usage_reason(run)
    if reason:
        raise LingcoderError(f"{run_dir}: nothing to count: {reason}")
    cached_expert_usage(run, final_checkpoint(run), max_documents=max_documents, max_tokens=max_tokens, device=device)
    return run / EXPERT_USAGE
