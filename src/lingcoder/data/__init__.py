"""Data: curation steps, tokenizer training, tokenization."""
