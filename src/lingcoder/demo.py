"""The end-to-end demo that exists today: train the tiny model briefly on code embedded in every
Python installation (the standard library), save it in the HF layout, reload it, generate.

Later stages (curation, the real training loop, eval) replace the pieces here one by one; the
training loop below is deliberately minimal (AdamW, next-token loss plus the MoE balancing losses).
"""

from __future__ import annotations

import math
import sysconfig
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from lingcoder.data.tokenizer import EOS, train_tokenizer
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM
from lingcoder.serve.generate import generate, load_for_generation

# Small, stable, pure-Python standard-library modules: the demo's "small embedded text".
DEMO_MODULES = ["textwrap", "string", "bisect", "heapq", "fnmatch", "shlex", "glob", "colorsys", "keyword",
                "calendar", "copy", "queue", "sched", "statistics", "graphlib", "operator", "functools", "random"]


@dataclass
class DemoResult:
    checkpoint: Path
    first_loss: float
    last_loss: float
    unigram_entropy: float
    samples: dict[str, str]


def embedded_text() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / f"{name}.py").read_text(encoding="utf-8") for name in DEMO_MODULES
            if (stdlib / f"{name}.py").is_file()]


def run_demo(out: str | Path, steps: int = 60, batch_size: int = 8, seq_len: int = 256, lr: float = 3e-3,
             seed: int = 0, console: Console | None = None) -> DemoResult:
    console = console or Console()
    out = Path(out)
    torch.manual_seed(seed)
    texts = embedded_text()
    console.print(f"[bold]1/4[/] training a byte-level BPE tokenizer on {len(texts)} stdlib modules "
                  f"({sum(map(len, texts)) / 1e6:.2f} MB)")
    config = BailingMoeConfig.preset("tiny")
    tokenizer = train_tokenizer(texts, config.vocab_size)
    eos = tokenizer.token_to_id(EOS)
    stream = [t for text in texts for t in [*tokenizer.encode(text).ids, eos]]
    tokens = torch.tensor(stream)
    counts = torch.tensor(list(Counter(stream).values()), dtype=torch.float64)
    unigram_entropy = float(-(counts / counts.sum() * (counts / counts.sum()).log()).sum())

    model = BailingMoeForCausalLM(config)
    total = model.num_parameters()
    console.print(f"[bold]2/4[/] training the tiny BailingMoe ({total / 1e6:.2f}M parameters) for {steps} steps "
                  f"on {len(tokens):,} tokens")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    losses = []
    start = time.time()
    for step in range(steps):
        starts = torch.randint(0, len(tokens) - seq_len - 1, (batch_size,))
        batch = torch.stack([tokens[s : s + seq_len] for s in starts.tolist()])
        for group in optimizer.param_groups:  # short warm-up, then cosine to 10%
            group["lr"] = lr * min(1.0, (step + 1) / 10) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        out_step = model(batch, labels=batch)
        optimizer.zero_grad(set_to_none=True)
        out_step.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(out_step.lm_loss.item())
        if step % 10 == 0 or step == steps - 1:
            console.print(f"  step {step:4d}  loss {losses[-1]:.3f}  ({time.time() - start:.0f}s)")

    checkpoint = out / "checkpoint"
    console.print(f"[bold]3/4[/] saving to {checkpoint} (HF layout) and reloading")
    model.save_pretrained(checkpoint, tokenizer=tokenizer)
    model, tokenizer = load_for_generation(checkpoint)

    console.print("[bold]4/4[/] generating")
    prompts = ["def ", "import "]
    greedy = generate(model, tokenizer, prompts, max_new_tokens=40, stop=["\n\n"])
    sampled = generate(model, tokenizer, prompts, max_new_tokens=40, temperature=0.8, top_p=0.95, seed=seed)
    samples = {}
    for prompt, g, s in zip(prompts, greedy, sampled, strict=True):
        samples[f"greedy: {prompt}"], samples[f"sampled: {prompt}"] = g, s
        console.print(f"  [cyan]greedy [/] {prompt!r} -> {g!r}")
        console.print(f"  [cyan]sampled[/] {prompt!r} -> {s!r}")
    console.print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} nats/token (unigram entropy of the data: "
                  f"{unigram_entropy:.3f})")
    return DemoResult(checkpoint, losses[0], losses[-1], unigram_entropy, samples)
