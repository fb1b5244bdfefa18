"""Data: curation (docs/pipeline.md; `curate.py` is the entry point), tokenizer training, tokenization."""
