"""Training metrics: FLOPs and MFU, and the sinks they go to (JSONL always, TensorBoard if installed).

MFU = achieved FLOP/s / peak FLOP/s, with model FLOPs per token = 6 x activated non-embedding
parameters + 12 x layers x heads x head_dim x seq_len for attention (the PaLM formula, with the
activated parameters of the MoE instead of all of them).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from lingcoder.model import BailingMoeConfig, count_parameters

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
                   "A10G": 125.0, "L4": 121.0, "4090": 165.0}


def flops_per_token(config: BailingMoeConfig, seq_len: int) -> float:
    _, active = count_parameters(config)
    non_embedding = active - config.vocab_size * config.hidden_size
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * seq_len
    return 6 * non_embedding + attention


def peak_flops(device: torch.device, configured_tflops: float = 0.0) -> tuple[float, str]:
    """(peak FLOP/s, how it was found). CPU peaks are estimates: cores x clock x FMA width."""
    if configured_tflops > 0:
        return configured_tflops * 1e12, "configured"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} bf16 dense"
        return 0.0, f"unknown GPU {name}"
    return _cpu_peak()


def _cpu_peak() -> tuple[float, str]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 0.0, "unknown CPU"
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)]
    if not mhz:
        return 0.0, "unknown CPU clock"
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4  # fp32 lanes per vector
    fma_units = 2  # two FMA pipes per core on current x86 server cores
    cores = len(os.sched_getaffinity(0))
    torch_threads = min(cores, torch.get_num_threads())
    flops = torch_threads * max(mhz) * 1e6 * lanes * 2 * fma_units
    return flops, f"estimated: {torch_threads} cores x {max(mhz):.0f} MHz x {lanes} fp32 lanes x 2 FMA"


class MetricsSink:
    """Appends one JSON object per record to `metrics.jsonl`; mirrors scalars to TensorBoard."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tensorboard = None
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # TensorBoard is optional
                self.tensorboard = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            prefix = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
