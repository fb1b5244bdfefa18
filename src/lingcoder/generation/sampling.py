"""Sampling settings and stop strings, shared by every generator (our engine, the eval backends, synth).

Torch-free, so HTTP clients of an OpenAI-compatible endpoint use the same settings without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from lingcoder.errors import LingcoderError


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: `n` completions per prompt of at most `max_tokens` tokens each, cut at `stop`.

    Temperature 0 is greedy decoding; `top_k` 0 and `top_p` 1 disable those cuts; `seed` None draws
    from the global generator. `n > 1` needs a temperature: identical greedy samples only waste an
    evaluation's budget. (The serving engine takes `n` from each request instead, since the OpenAI
    API allows identical samples.)
    """

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_tokens < 1:
            raise LingcoderError(f"n={self.n}, max_tokens={self.max_tokens}: both must be >= 1")
        if self.temperature < 0:
            raise LingcoderError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise LingcoderError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise LingcoderError(f"top_k must be >= 0, got {self.top_k}")
        if self.n > 1 and self.temperature == 0:
            raise LingcoderError(f"n={self.n} samples with temperature 0 would be identical: set --temperature")


def cut_at_stop(text: str, stop: list[str] | tuple[str, ...]) -> str:
    """`text` up to the first occurrence of any stop string; empty stop strings are ignored."""
    cut = len(text)
    for s in stop:
        if s:
            position = text.find(s)
            if 0 <= position < cut:
                cut = position
    return text[:cut]
