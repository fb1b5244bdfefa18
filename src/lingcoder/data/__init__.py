"""Code-data curation and tokenization (PAPER.md section 2); `curate.py` is the entry point."""
