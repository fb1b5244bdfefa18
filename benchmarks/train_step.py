"""Training-step throughput: tokens/s and MFU of a MoE config and its dense twin (same activated
parameters), timed side by side, interleaved, in one run (random tokens; forward, backward, AdamW).

    python benchmarks/train_step.py                   # CPU: the tiny config, fp32
    python benchmarks/train_step.py --device cuda     # GPU: the small config, bf16 autocast
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM, count_parameters
from lingcoder.train.metrics import flops_per_token, peak_flops
from lingcoder.train.trainer import autocast_context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default=None, help="default: tiny on CPU, small on GPU")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default 8 CPU, 16 GPU)")
    parser.add_argument("--seq-len", type=int, default=None, help="default 256 CPU, 2048 GPU")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    preset = args.preset or ("small" if on_gpu else "tiny")
    batch, seq_len = args.batch or (16 if on_gpu else 8), args.seq_len or (2048 if on_gpu else 256)
    autocast = autocast_context("auto", device)
    peak, peak_source = peak_flops(device)

    configs = {"moe": BailingMoeConfig.preset(preset)}
    configs["dense twin"] = configs["moe"].dense()
    runs = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        model = BailingMoeForCausalLM(config).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
        forward = torch.compile(model) if args.compile else model
        runs[name] = (config, model, optimizer, forward)
    ids = torch.randint(0, configs["moe"].vocab_size, (batch, seq_len + 1), device=device)

    def step(model, optimizer, forward) -> None:
        with autocast:
            out = forward(ids[:, :-1])
        loss = F.cross_entropy(out.logits.float().flatten(0, 1), ids[:, 1:].flatten())
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if on_gpu:
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {name: [] for name in runs}
    for _, model, optimizer, forward in runs.values():  # warm-up (and compilation)
        step(model, optimizer, forward)
    for _ in range(args.steps):
        for name, (_, model, optimizer, forward) in runs.items():
            start = time.perf_counter()
            step(model, optimizer, forward)
            times[name].append(time.perf_counter() - start)

    print(f"{preset} on {device} ({'bf16 autocast' if on_gpu else 'fp32'}), {batch} x {seq_len} tokens per step, "
          f"median of {args.steps} steps; peak {peak / 1e12:.2f} TFLOP/s ({peak_source})")
    print(f"{'model':<12}{'total':>10}{'activated':>11}{'tokens/s':>12}{'MFU':>8}{'time vs moe':>13}")
    base = statistics.median(times["moe"])
    for name, (config, _, _, _) in runs.items():
        total, active = count_parameters(config)
        median = statistics.median(times[name])
        tokens_per_s = batch * seq_len / median
        mfu = tokens_per_s * flops_per_token(config, seq_len) / peak if peak else float("nan")
        print(f"{name:<12}{total / 1e6:>9.1f}M{active / 1e6:>10.1f}M{tokens_per_s:>12,.0f}{mfu:>8.1%}"
              f"{median / base:>12.2f}x")


if __name__ == "__main__":
    main()
