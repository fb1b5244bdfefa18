"""Fill-in-the-middle, applied per document at a configurable rate, deterministic per document id.

A transformed document is cut at two character positions into prefix / middle / suffix and laid
out with the FIM special tokens, in one of two orders (as in StarCoder / Qwen2.5-Coder):
  PSM  <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle
  SPM  <|fim_prefix|> <|fim_suffix|> suffix <|fim_middle|> prefix middle
so the model learns to write `middle` after seeing both sides.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from tokenizers import Tokenizer

from lingcoder.data.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from lingcoder.errors import LingcoderError


@dataclass
class FimConfig:
    rate: float = 0.5  # share of documents transformed
    spm_rate: float = 0.5  # among those, share laid out SPM instead of PSM
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rate", "spm_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise LingcoderError(f"fim.{name} must be in [0, 1], got {getattr(self, name)}")


def document_rng(doc_id: str, seed: int, purpose: str) -> random.Random:
    """A random stream that depends only on (seed, purpose, document id): stable across runs and workers."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{doc_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def fim_layout(text: str, doc_id: str, config: FimConfig) -> tuple[str, list[str]] | None:
    """None if this document stays plain; else ('psm'|'spm', the pieces in order, specials included)."""
    rng = document_rng(doc_id, config.seed, "fim")
    if len(text) < 2 or rng.random() >= config.rate:
        return None
    lo, hi = sorted(rng.sample(range(len(text) + 1), 2))
    prefix, middle, suffix = text[:lo], text[lo:hi], text[hi:]
    if rng.random() < config.spm_rate:
        return "spm", [FIM_PREFIX, FIM_SUFFIX, suffix, FIM_MIDDLE, prefix + middle]
    return "psm", [FIM_PREFIX, prefix, FIM_SUFFIX, suffix, FIM_MIDDLE, middle]


def encode_document(tokenizer: Tokenizer, text: str, doc_id: str, config: FimConfig) -> tuple[list[int], str]:
    """Token ids of one document (FIM applied or not) and its layout: 'plain', 'psm' or 'spm'."""
    layout = fim_layout(text, doc_id, config)
    if layout is None:
        return tokenizer.encode(text, add_special_tokens=False).ids, "plain"
    kind, pieces = layout
    specials = {FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE}
    ids: list[int] = []
    for piece in pieces:
        if piece in specials:
            ids.append(tokenizer.token_to_id(piece))
        elif piece:
            ids.extend(tokenizer.encode(piece, add_special_tokens=False).ids)
    return ids, kind
