"""Synthetic post-training data verified by execution: `synth(SynthConfig(curated, out, ...)) -> stats`
(pipeline.py).

Imported lazily so that mining's worker processes load only what they use.
"""


def __getattr__(name: str):
    if name in ("synth", "SynthConfig"):
        from lingcoder.synth import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'lingcoder.synth' has no attribute {name!r}")
