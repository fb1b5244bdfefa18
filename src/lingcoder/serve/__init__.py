"""Serving: sampling and batched KV-cache generation (an OpenAI-compatible server comes later)."""
