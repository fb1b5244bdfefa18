"""Calling a generation backend so that one failed request costs that item, not the run.

The batch goes in one call (the OpenAI backend sends its requests in parallel, the checkpoint
backend decodes them as one batch); when that call fails, each item is retried alone and a
request the endpoint refuses (HTTP error, prompt too long for the model) becomes an error string
for that item, counted by the caller. When every item fails the endpoint is unusable and
`LingcoderError` is raised with the first failure.
"""

from __future__ import annotations

from lingcoder.errors import LingcoderError
from lingcoder.generation.sampling import SamplingParams


def ask_each(backend, kind: str, items: list, settings: SamplingParams) -> list[list[str] | str]:
    """For each prompt (`kind` = complete) or conversation (`kind` = chat): its n texts, or an error."""
    if not items:
        return []
    call = backend.complete if kind == "complete" else backend.chat
    try:
        return call(items, settings)
    except LingcoderError:
        pass
    results: list[list[str] | str] = []
    for item in items:
        try:
            results.append(call([item], settings)[0])
        except LingcoderError as exc:
            results.append(str(exc))
    if all(isinstance(r, str) for r in results):
        raise LingcoderError(f"every request to the model failed; the first: {results[0]}")
    return results
