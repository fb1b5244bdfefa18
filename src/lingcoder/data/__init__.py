"""Data: curation (PAPER.md section 2; `curate.py` is the entry point), tokenizer training, tokenization."""
