"""Serving: sampling, batched KV-cache generation, a continuous-batching engine, an OpenAI-compatible server."""
