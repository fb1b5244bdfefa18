"""lingcoder: reproduce Ling-Coder-Lite end to end (curate, train, post-train, evaluate, serve)."""

__version__ = "0.1.0"
