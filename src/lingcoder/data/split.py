"""The document-level train/validation split: the one rule `lingcoder tokenize` applies and that every
later reader of held-out documents (expert usage, experiments, tests) asks again.

A document is held out when a random draw seeded by (seed, its id) falls below `val_fraction`, so the
split depends on nothing but the id: not on the worker, the shard or the order documents arrive in.
"""

from __future__ import annotations

from lingcoder.data.fim import document_rng


def is_held_out(doc_id: str, val_fraction: float, seed: int) -> bool:
    """True when document `doc_id` belongs to the validation split."""
    return document_rng(doc_id, seed, "split").random() < val_fraction
