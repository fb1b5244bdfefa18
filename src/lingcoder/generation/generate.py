"""Batched generation with a KV cache: greedy or sampled (temperature, top-k, top-p), stop strings.

Prompts of different lengths are left-padded into one batch; the padding mask keeps pad tokens
out of attention and out of the position count, so each row decodes as if it were alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from lingcoder.errors import LingcoderError
from lingcoder.generation.sampling import SamplingParams, cut_at_stop
from lingcoder.model import BailingMoeForCausalLM, KVCache


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise LingcoderError(f"{model_dir}: no tokenizer.json (a checkpoint directory carries its tokenizer)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise LingcoderError(f"{path}: unreadable tokenizer: {exc}") from None


def load_for_generation(model_dir: str | Path, device: str = "cpu", dtype: torch.dtype | str | None = None):
    """(model in eval mode, tokenizer) from a checkpoint directory."""
    tokenizer = load_tokenizer(model_dir)
    model = BailingMoeForCausalLM.from_pretrained(model_dir, dtype=dtype, device=device).eval()
    return model, tokenizer


def sample_next(logits_BV: torch.Tensor, params: SamplingParams, generator: torch.Generator | None):
    """One token per row from the last-position logits."""
    if params.temperature == 0:
        return logits_BV.argmax(dim=-1)
    logits_BV = logits_BV.float() / params.temperature
    if params.top_k:
        kth = logits_BV.topk(min(params.top_k, logits_BV.shape[-1]), dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth, float("-inf"))
    if params.top_p < 1:
        sorted_logits, order = logits_BV.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= params.top_p  # keep the first token past p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits_BV = logits_BV.masked_fill(drop, float("-inf"))
    probs = logits_BV.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_ids(model: BailingMoeForCausalLM, prompts: list[list[int]], params: SamplingParams,
                 eos_token_id: int | None = None, is_done=None) -> list[list[int]]:
    """New token ids for each prompt. Stops a row at `eos_token_id` (not included) or when
    `is_done(row, ids)` says so (used for stop strings)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise LingcoderError("every prompt must have at least one token")
    vocab = model.config.vocab_size
    bad = [t for p in prompts for t in p if not 0 <= t < vocab]
    if bad:
        raise LingcoderError(f"prompt token id {bad[0]} is outside the model's vocabulary (size {vocab})")
    device = next(model.parameters()).device
    B, longest = len(prompts), max(len(p) for p in prompts)
    max_len = longest + params.max_tokens
    if max_len > model.config.max_position_embeddings:
        raise LingcoderError(
            f"prompt ({longest} tokens) + max_new_tokens ({params.max_tokens}) exceeds the model's "
            f"max_position_embeddings ({model.config.max_position_embeddings})"
        )
    pad = model.config.pad_token_id
    input_ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts], device=device)
    mask = torch.zeros(B, max_len, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        mask[i, longest - len(p) : longest] = True
    cache = KVCache(model.config, B, max_len, device, next(model.parameters()).dtype)
    generator = torch.Generator(device=device).manual_seed(params.seed) if params.seed is not None else None

    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    step_ids = input_ids
    for _ in range(params.max_tokens):
        logits = model(step_ids, attention_mask=mask, cache=cache, logits_to_keep=1).logits[:, -1]
        next_ids = sample_next(logits, params, generator)
        for i, token in enumerate(next_ids.tolist()):
            if done[i]:
                continue
            if token == eos_token_id:
                done[i] = True
                continue
            out[i].append(token)
            if is_done is not None and is_done(i, out[i]):
                done[i] = True
        if all(done):
            break
        mask[:, cache.length] = True
        step_ids = next_ids[:, None]
    return out


def generate(model: BailingMoeForCausalLM, tokenizer: Tokenizer, prompts: list[str], *,
             max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
             stop: list[str] | None = None, seed: int | None = None) -> list[str]:
    """Completions (prompt excluded), each cut before the first stop string."""
    params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                            stop=tuple(stop or ()), seed=seed)
    encoded = [tokenizer.encode(p, add_special_tokens=False).ids for p in prompts]
    stops = [s for s in params.stop if s]

    def hit_stop(_row: int, ids: list[int]) -> bool:
        text = tokenizer.decode(ids, skip_special_tokens=False)
        return any(s in text for s in stops)

    new_ids = generate_ids(model, encoded, params, eos_token_id=model.config.eos_token_id,
                           is_done=hit_stop if stops else None)
    return [cut_at_stop(tokenizer.decode(ids, skip_special_tokens=False), stops) for ids in new_ids]


@dataclass
class GenerateConfig:
    """`lingcoder generate`: the checkpoint, the prompts and how to sample."""

    model: str  # a checkpoint directory (with tokenizer.json)
    prompts: list[str]  # one completion each
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass
    top_k: int = 0  # keep the k most likely tokens; 0 = all
    stop: list[str] = field(default_factory=list)  # stop strings
    seed: int | None = None  # sampling seed
    device: str = "cpu"  # cpu, cuda, cuda:1, ...
    dtype: str | None = None  # float32, bfloat16, ...; None: as stored


def generate_from_config(config: GenerateConfig) -> list[str]:
    """`lingcoder generate`: load the checkpoint and complete every prompt."""
    model, tokenizer = load_for_generation(config.model, device=config.device, dtype=config.dtype)
    return generate(model, tokenizer, config.prompts, max_new_tokens=config.max_new_tokens,
                    temperature=config.temperature, top_p=config.top_p, top_k=config.top_k, stop=config.stop,
                    seed=config.seed)
