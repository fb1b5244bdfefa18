"""Synthetic post-training data verified by execution: `synth(curated, out, ...) -> stats` (pipeline.py).

Imported lazily so that mining's worker processes load only what they use.
"""


def __getattr__(name: str):
    if name == "synth":
        from lingcoder.synth.pipeline import synth

        return synth
    raise AttributeError(f"module 'lingcoder.synth' has no attribute {name!r}")
