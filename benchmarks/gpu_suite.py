"""The GPU suite: every MoE speed figure of the project in one command, one table and one JSON file.

Each figure is a ratio of two things timed side by side, interleaved, in this run (medians):

  P1  MoE block fwd+bwd (router + grouped experts), 8192 tokens / a dense SwiGLU of the same FLOPs   goal <= 1.05
  P1' the per-expert loop oracle, same shapes / the same dense SwiGLU                                   (anchor 14.3)
  P2  MoE block decode, 1 token (gathered experts compiled, as in the static decode step; also gathered
      and grouped eager) / reading its K experts' weights once (a sum over a buffer of the same bytes)  goal <= 1.5
  P3  training MFU of the 1.34B-total / 0.25B-active MoE, batch 8 x 2048, eager and compiled: achieved
      model FLOP/s over the device's peak, and over a large bf16 matmul measured here                   goal >= 0.45
  T   train tokens/s with torch.compile, activation checkpointing (memory bought with recompute), and
      both / plain eager
  P4  full Ling-Coder-lite shape (random weights), greedy batch-1 decode with the static compiled step
      (CUDA graphs): the time to read its active weights once / the time per token                      goal >= 0.8
  P5  dense-7B shape (hidden 3584, FFN 18944, 28 heads / 4 KV) decode latency / the MoE's, same step   goal >= 2.2

    python benchmarks/gpu_suite.py                      # on a GPU: full shapes, bf16 (needs ~80 GB)
    python benchmarks/gpu_suite.py --smoke              # tiny shapes on CPU in seconds (run by the tests)
    python benchmarks/gpu_suite.py --only P1,P2 --out suite.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the loop oracle lives in tests/
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM, count_parameters  # noqa: E402
from lingcoder.model.attention import KVCache  # noqa: E402
from lingcoder.model.moe import MoE  # noqa: E402
from lingcoder.model.static_decode import StaticDecodeStep, feed_forward  # noqa: E402
from lingcoder.train.metrics import flops_per_token, peak_flops  # noqa: E402
from tests.moe_oracle import loop_oracle  # noqa: E402

FIGURES = ("P1", "P2", "P3", "T", "P4", "P5")


@dataclasses.dataclass
class Shapes:
    """Everything the suite builds; `full()` for a GPU, `smoke()` for a CPU test run."""

    block: BailingMoeConfig  # the MoE block of P1/P2 (Ling-lite experts)
    block_tokens: int
    train: BailingMoeConfig  # P3 / T
    train_batch: int
    train_seq: int
    decode: BailingMoeConfig  # P4 / P5's MoE
    dense: BailingMoeConfig  # P5's dense model
    decode_prompt: int
    decode_tokens: int
    repeats: int
    matmul: int  # side of the square matmul measuring achievable FLOP/s

    @classmethod
    def full(cls) -> Shapes:
        lite = BailingMoeConfig.preset("ling-coder-lite")
        train = dataclasses.replace(
            lite, vocab_size=32768, hidden_size=1024, num_hidden_layers=12, num_attention_heads=16,
            num_key_value_heads=4, head_dim=64, num_experts=64, num_experts_per_tok=6, num_shared_experts=2,
            moe_intermediate_size=1408, intermediate_size=5632, first_k_dense_replace=0,
            max_position_embeddings=2048)
        dense = dataclasses.replace(
            lite, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
            num_key_value_heads=4, head_dim=128, num_experts=0, first_k_dense_replace=28, vocab_size=152064)
        return cls(lite, 8192, train, 8, 2048, lite, dense, 128, 64, 10, 8192)

    @classmethod
    def smoke(cls) -> Shapes:
        tiny = BailingMoeConfig.preset(
            "tiny", vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, num_experts=8, num_experts_per_tok=2, num_shared_experts=1,
            moe_intermediate_size=16, intermediate_size=48, max_position_embeddings=128, first_k_dense_replace=0)
        dense = dataclasses.replace(tiny, num_experts=0, first_k_dense_replace=2, intermediate_size=96,
                                    hidden_size=48, num_attention_heads=6, head_dim=8)
        return cls(tiny, 64, tiny, 2, 32, tiny, dense, 8, 4, 2, 64)


class Timer:
    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn: Callable) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def side_by_side(self, variants: dict[str, Callable], repeats: int, warmup: int = 1) -> dict[str, float]:
        """Median seconds per variant, interleaved so drift hits every variant alike."""
        for fn in variants.values():
            for _ in range(warmup):
                fn()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, fn in variants.items():
                times[name].append(self(fn))
        return {name: statistics.median(t) for name, t in times.items()}


def random_model(config: BailingMoeConfig, device: torch.device, dtype: torch.dtype) -> BailingMoeForCausalLM:
    """Random weights drawn on the device itself (a 16.8B model would take minutes on the host)."""
    with torch.device("meta"):
        model = BailingMoeForCausalLM(config).to(dtype)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, config.initializer_range)
        for b in model.buffers():
            b.zero_()
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.word_embeddings.weight
    return model.eval()


def read_time(timer: Timer, num_bytes: int, dtype: torch.dtype, repeats: int, device) -> float:
    """Seconds to read `num_bytes` once: a sum over a buffer that size (bandwidth bound)."""
    buffer = torch.ones(max(1, num_bytes // torch.finfo(dtype).bits * 8), dtype=dtype, device=device)
    return timer.side_by_side({"read": lambda: buffer.sum()}, repeats)["read"]


def bench_block(s: Shapes, timer: Timer, device, dtype, results: dict, figures: set[str]) -> None:
    c = s.block
    torch.manual_seed(0)
    moe = MoE(c).to(device, dtype)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.02)
    D, Fw, K = c.hidden_size, c.moe_intermediate_size, c.num_experts_per_tok
    if "P1" in figures:
        x = torch.randn(s.block_tokens, D, device=device, dtype=dtype, requires_grad=True)
        grad = torch.randn_like(x)
        dense = [(torch.randn(shape, device=device, dtype=dtype) * 0.02).requires_grad_()
                 for shape in ((K * Fw, D), (K * Fw, D), (D, K * Fw))]
        shared = moe.shared_experts
        moe.shared_experts = None  # routed experts + router only: the dense twin has the routed FLOPs
        t = timer.side_by_side({
            "moe": lambda: moe(x[None]).hidden.backward(grad[None]),
            "dense": lambda: F.linear(F.silu(F.linear(x, dense[0])) * F.linear(x, dense[1]), dense[2]).backward(grad),
            "loop": lambda: loop_oracle(moe, x).backward(grad),
        }, s.repeats)
        moe.shared_experts = shared
        results["P1"] = {"ratio": t["moe"] / t["dense"], "goal": "<= 1.05", "moe_ms": t["moe"] * 1e3,
                         "dense_ms": t["dense"] * 1e3, "what": "MoE block fwd+bwd / dense same FLOPs"}
        results["P1_loop"] = {"ratio": t["loop"] / t["dense"], "goal": "(anchor 14.3)", "loop_ms": t["loop"] * 1e3,
                              "what": "per-expert loop fwd+bwd / dense same FLOPs"}
    if "P2" in figures:
        x1 = torch.randn(1, 1, D, device=device, dtype=dtype)
        moe.shared_experts, shared = None, moe.shared_experts
        gathered = partial(feed_forward, moe)  # what the static decode step runs
        compiled = torch.compile(gathered, fullgraph=True, backend=compile_backend(device))
        with torch.no_grad():
            t = timer.side_by_side({"grouped": lambda: moe(x1), "gathered": lambda: gathered(x1),
                                    "compiled": lambda: compiled(x1)}, s.repeats * 5, warmup=2)
        moe.shared_experts = shared
        expert_bytes = K * 3 * D * Fw * torch.finfo(dtype).bits // 8
        read = read_time(timer, expert_bytes, dtype, s.repeats * 5, device)
        for key, variant, what in (("P2", "compiled", "gathered experts, compiled (the static decode step's)"),
                                   ("P2_gathered_eager", "gathered", "gathered experts, eager"),
                                   ("P2_grouped_eager", "grouped", "grouped GEMM, eager")):
            results[key] = {"ratio": t[variant] / read, "goal": "<= 1.5", "decode_us": t[variant] * 1e6,
                            "read_us": read * 1e6, "what": f"MoE decode 1 token ({what}) / read its K experts once"}


def bench_training(s: Shapes, timer: Timer, device, dtype, results: dict, figures: set[str], peak: float) -> None:
    c = s.train
    tokens = s.train_batch * s.train_seq
    ids = torch.randint(0, c.vocab_size, (s.train_batch, s.train_seq + 1), device=device)
    wanted = [("eager", False, False)]
    if "T" in figures:
        wanted += [("compile", True, False), ("checkpointing", False, True), ("compile+checkpointing", True, True)]
    torch.manual_seed(0)
    model = random_model(c, device, torch.float32).train()  # fp32 master weights; one copy for every variant
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    compiled = torch.compile(model, backend=compile_backend(device)) if "T" in figures else None
    variants = {name: train_step_fn(model, compiled if use_compile else model, recompute, optimizer, ids, device,
                                    dtype)
                for name, use_compile, recompute in wanted}
    t = timer.side_by_side(variants, s.repeats, warmup=2)
    model_flops = flops_per_token(c, s.train_seq) * tokens
    size = s.matmul
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    matmul = timer.side_by_side({"mm": lambda: a @ b}, s.repeats * 3)["mm"]
    achievable = 2 * size**3 / matmul
    total, active = count_parameters(c)
    results["P3"] = {"ratio": model_flops / t["eager"] / peak if peak else None, "goal": ">= 0.45",
                     "vs_measured_matmul": model_flops / t["eager"] / achievable,
                     "tokens_per_s": tokens / t["eager"], "params_total": total, "params_active": active,
                     "what": "training MFU (eager, bf16 autocast, fp32 master weights)"}
    if "compile" in t:
        results["P3_compiled"] = {"ratio": model_flops / t["compile"] / peak if peak else None, "goal": ">= 0.45",
                                  "vs_measured_matmul": model_flops / t["compile"] / achievable,
                                  "tokens_per_s": tokens / t["compile"], "what": "training MFU (torch.compile)"}
    for name in wanted[1:]:
        goal = "> 1 (speed-up)" if name[0] == "compile" else "< 1 (recompute)"
        results[f"T_{name[0]}"] = {"ratio": t["eager"] / t[name[0]], "goal": goal,
                                   "tokens_per_s": tokens / t[name[0]], "what": f"train tokens/s {name[0]} / eager"}
    del model, optimizer, compiled, variants
    free(device)


def train_step_fn(model, forward, recompute: bool, optimizer, ids, device, dtype) -> Callable:
    """One training step (bf16 autocast on a GPU, AdamW) with activation checkpointing on or off."""
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        model.model.activation_checkpointing = recompute  # the compiled graph guards on it: one graph each
        with autocast:
            logits = forward(ids[:, :-1]).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def bench_decode(s: Shapes, timer: Timer, device, dtype, results: dict, figures: set[str]) -> None:
    mode = "reduce-overhead" if device.type == "cuda" else None
    moe_time = None
    for label, config in (("moe", s.decode), ("dense", s.dense)):
        if label == "dense" and "P5" not in figures:
            break
        model = random_model(config, device, dtype)
        per_token = decode_time(model, s, timer, device, dtype, mode)
        if label == "moe":
            moe_time = per_token
            _, active = count_parameters(config)
            read = read_time(timer, active * torch.finfo(dtype).bits // 8, dtype, s.repeats, device)
            results["P4"] = {"ratio": read / per_token, "goal": ">= 0.8", "tokens_per_s": 1 / per_token,
                             "roofline_tokens_per_s": 1 / read,
                             "what": "MoE greedy decode batch 1: active-weight read time / time per token"}
        else:
            results["P5"] = {"ratio": per_token / moe_time, "goal": ">= 2.2", "dense_tokens_per_s": 1 / per_token,
                             "what": "dense-7B decode latency / MoE decode latency"}
        del model
        free(device)


def decode_time(model, s: Shapes, timer: Timer, device, dtype, mode) -> float:
    """Seconds per token of the compiled static decode step after an eager prefill (batch 1)."""
    prompt = torch.randint(0, model.config.vocab_size, (1, s.decode_prompt), device=device)
    cache = KVCache(model.config, 1, s.decode_prompt + s.decode_tokens + 4, device, dtype)
    with torch.no_grad():
        logits = model(prompt, cache=cache).logits[:, -1]
    step = torch.compile(StaticDecodeStep(model, cache), fullgraph=True, mode=mode, backend=compile_backend(device))
    valid = torch.ones(1, cache.max_len, dtype=torch.bool, device=device)
    token = logits.argmax(-1, keepdim=True)
    slot = torch.tensor(s.decode_prompt, device=device)
    for _ in range(3):  # compile and capture
        step(token, slot.view(1, 1), slot, valid)

    def run():
        nonlocal token
        for i in range(s.decode_tokens):
            pos = torch.tensor(s.decode_prompt + i, device=device)
            token = step(token, pos.view(1, 1), pos, valid).argmax(-1, keepdim=True)
    return timer.side_by_side({"decode": run}, max(1, s.repeats // 2))["decode"] / s.decode_tokens


def compile_backend(device: torch.device) -> str:
    """Inductor on a GPU; on CPU (the smoke run) `aot_eager`, which traces the same graphs without
    spending minutes compiling C++."""
    return "inductor" if device.type == "cuda" else "aot_eager"


def free(device) -> None:
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU, fp32: checks the suite runs")
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu with --smoke)")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--out", default="gpu_suite.json", help="the JSON file written")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
    figures = {f.strip() for f in args.only.split(",") if f.strip()}
    unknown = figures - set(FIGURES)
    if unknown:
        parser.error(f"--only: unknown figure(s) {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    if device.type != "cuda" and not args.smoke:
        parser.error("no CUDA device: the full shapes need a GPU (use --smoke for the tiny CPU run)")
    shapes = Shapes.smoke() if args.smoke else Shapes.full()
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    timer = Timer(device)
    peak, peak_source = peak_flops(device)
    results: dict = {}
    if figures & {"P1", "P2"}:
        bench_block(shapes, timer, device, dtype, results, figures)
    if figures & {"P3", "T"}:
        bench_training(shapes, timer, device, dtype, results, figures, peak)
    if figures & {"P4", "P5"}:
        bench_decode(shapes, timer, device, dtype, results, figures)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": name, "dtype": str(dtype), "smoke": args.smoke, "torch": torch.__version__,
              "peak": peak_source, "figures": results}
    print(f"lingcoder GPU suite on {name} ({dtype}, torch {torch.__version__}{', smoke shapes' if args.smoke else ''})")
    print(f"{'figure':<26}{'ratio':>10}  {'goal':<16}what")
    for key, row in results.items():
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}"
        print(f"{key:<26}{ratio:>10}  {row['goal']:<16}{row['what']}")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
