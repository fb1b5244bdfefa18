"""Routed-expert time: grouped dispatch vs the per-expert loop vs a dense matmul of the same FLOPs.

Shapes default to Ling-lite's experts (hidden 2048, 64 experts of width 1408, top-6); on a CPU the
hidden size and expert width are halved (`--scale 0.5`) and the token count is smaller, so a run
takes about a minute. The three are timed side by side in one run, interleaved, and
reported as ratios to grouped (these machines are noisy; absolute times drift):
  grouped  `GroupedExperts` (sort by expert, offsets, three torch._grouped_mm calls, weighted sum)
  loop     the test oracle: one matmul chain per expert
  dense    one SwiGLU MLP of width top_k * expert_width over all tokens: the same FLOPs, no routing

    python benchmarks/moe_layer.py                      # CPU: fp32, 512 tokens, half-size experts
    python benchmarks/moe_layer.py --device cuda        # GPU: bf16, 8192 tokens, full-size experts
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test oracle lives in tests/
from lingcoder.model.moe import GroupedExperts  # noqa: E402
from tests.moe_oracle import loop_experts  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=None, help="default: 512 on CPU, 8192 on GPU")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--width", type=int, default=1408)
    parser.add_argument("--top-k", type=int, default=6)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--scale", type=float, default=None, help="hidden/width factor; default 0.5 CPU, 1 GPU")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    tokens = args.tokens or (8192 if on_gpu else 512)
    dtype = getattr(torch, args.dtype or ("bfloat16" if on_gpu else "float32"))
    scale = args.scale or (1.0 if on_gpu else 0.5)
    D, Fw = int(args.hidden * scale), int(args.width * scale)
    E, K, dev = args.experts, args.top_k, args.device

    torch.manual_seed(0)
    experts = GroupedExperts(E, D, Fw).to(dev, dtype)
    for p in experts.parameters():
        torch.nn.init.normal_(p, std=0.02)
    dense_gate = torch.randn(K * Fw, D, device=dev, dtype=dtype, requires_grad=True)
    dense_up = torch.randn(K * Fw, D, device=dev, dtype=dtype, requires_grad=True)
    dense_down = torch.randn(D, K * Fw, device=dev, dtype=dtype, requires_grad=True)
    x = torch.randn(tokens, D, device=dev, dtype=dtype, requires_grad=True)
    router_logits = torch.randn(tokens, E, device=dev)
    topk_w, topk_idx = router_logits.softmax(-1).topk(K, dim=-1)
    topk_w = topk_w / topk_w.sum(-1, keepdim=True)
    grad = torch.randn(tokens, D, device=dev, dtype=dtype)

    variants = {
        "grouped": lambda: experts(x, topk_idx, topk_w)[0],
        "loop": lambda: loop_experts(experts, x, topk_idx, topk_w),
        "dense": lambda: F.linear(F.silu(F.linear(x, dense_gate)) * F.linear(x, dense_up), dense_down),
    }
    results: dict[str, dict[str, list[float]]] = {name: {"fwd": [], "fwd+bwd": []} for name in variants}
    for fn in variants.values():  # warm-up
        fn().backward(grad)
    for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
        for name, fn in variants.items():
            with torch.no_grad():
                results[name]["fwd"].append(timed(fn, dev))
            results[name]["fwd+bwd"].append(timed(lambda fn=fn: fn().backward(grad), dev))

    flops = 2 * tokens * K * 3 * D * Fw
    print(f"routed experts: {tokens} tokens, hidden {D}, {E} experts x {Fw}, top-{K}, {dtype}, {dev} "
          f"({flops / 1e9:.1f} GFLOP forward); median of {args.repeats}")
    print(f"{'variant':<10}{'fwd ms':>10}{'fwd+bwd ms':>13}{'fwd vs grouped':>16}{'fwd+bwd vs grouped':>20}")
    base = {phase: statistics.median(results["grouped"][phase]) for phase in ("fwd", "fwd+bwd")}
    for name, phases in results.items():
        fwd, both = statistics.median(phases["fwd"]), statistics.median(phases["fwd+bwd"])
        print(f"{name:<10}{fwd * 1e3:>10.2f}{both * 1e3:>13.2f}{fwd / base['fwd']:>15.2f}x"
              f"{both / base['fwd+bwd']:>19.2f}x")


if __name__ == "__main__":
    main()
