"""Serving throughput, side by side: `lingcoder serve` vs vLLM (and optionally another lingcoder tree).

Every engine serves the same checkpoint as its own server process with the same number of threads, and
answers the same greedy /v1/completions requests (`--max-tokens` each) from 1 client at a time and from
`--clients` concurrent clients. Rounds alternate engines and client counts, so load from elsewhere on
the machine falls on all of them alike; the table shows medians over rounds and the ratio of each
engine's tokens/s to vLLM's (or to the first engine's without vLLM). Tokens/s counts the completion
tokens each reply reports (a random model may end a reply early at EOS). Without --model, a randomly
initialised `small`-preset checkpoint in bf16 with a tokenizer trained on the standard library is built
in a temporary directory (random weights decode as fast as trained ones).

vLLM runs from its own environment: --vllm-python, else $LINGCODER_VLLM_PYTHON, else `.venv-vllm`
(`make vllm-env`); --no-vllm measures lingcoder alone. vLLM's CPU default binds its threads to all cores
but one (one thread on a 2-core machine); here it gets --threads unbound OpenMP threads, as lingcoder
does. --compare-src DIR adds a server running the lingcoder sources in DIR (e.g. a worktree of main) to
measure a change against the code before it.

    python benchmarks/serve.py                                  # small bf16, 2 threads, lingcoder vs vLLM
    python benchmarks/serve.py --no-vllm --compare-src ../main  # this tree vs main's engine
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer
from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM

SRC = Path(__file__).resolve().parents[1] / "src"
PROMPT_FILES = ["textwrap", "string", "bisect", "heapq", "fnmatch", "shlex", "glob", "colorsys"]


def stdlib_texts() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / f"{name}.py").read_text(encoding="utf-8") for name in PROMPT_FILES]


def random_checkpoint(directory: Path, preset: str, dtype: str) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))[:60]]
    tokenizer = train_tokenizer(corpus, vocab_size=BailingMoeConfig.preset(preset).vocab_size)
    torch.manual_seed(0)
    config = BailingMoeConfig.preset(preset, vocab_size=tokenizer.get_vocab_size(), torch_dtype=dtype)
    model = BailingMoeForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(directory / f"{preset}-random")
    save_tokenizer(tokenizer, directory / f"{preset}-random", model_max_length=config.max_position_embeddings)
    return directory / f"{preset}-random"


def prompts(count: int) -> list[str]:
    """Code prefixes of a few hundred characters, cut from different places of the standard library."""
    text = "".join(stdlib_texts())
    step = len(text) // count
    return [text[i * step : i * step + 300] for i in range(count)]


def run(url: str, model: str, requests: list[str], clients: int, max_tokens: int) -> tuple[float, int]:
    """Seconds to answer every request with `clients` parallel clients, and completion tokens generated."""
    def ask(prompt: str) -> int:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        reply = http.post(url + "/completions", json=body, timeout=900)
        reply.raise_for_status()
        return reply.json()["usage"]["completion_tokens"]

    with httpx.Client(limits=httpx.Limits(max_connections=clients)) as http, ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        tokens = sum(pool.map(ask, requests))
        return time.perf_counter() - start, tokens


class LingcoderServer:
    """`python -m lingcoder serve` on `model_dir`, running the lingcoder sources under `src`."""

    def __init__(self, model_dir: Path, src: Path, threads: int, max_batch_size: int, dtype: str):
        self.model_dir, self.src, self.threads = model_dir, src, threads
        self.max_batch_size, self.dtype = max_batch_size, dtype
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_name = model_dir.name
        self.process: subprocess.Popen | None = None

    def start(self) -> LingcoderServer:
        env = {**os.environ, "PYTHONPATH": str(self.src), "OMP_NUM_THREADS": str(self.threads)}
        command = [sys.executable, "-m", "lingcoder", "serve", str(self.model_dir), "--port", str(self.port),
                   "--dtype", self.dtype, "--max-batch-size", str(self.max_batch_size)]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        deadline = time.monotonic() + 600
        while True:
            try:
                httpx.get(self.base_url + "/models").raise_for_status()
                return self
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise LingcoderError(f"lingcoder serve ({self.src}) did not start: "
                                         f"{self.process.stderr.read()[-2000:]}") from None
                time.sleep(0.5)

    def metrics(self) -> str:
        text = httpx.get(self.base_url.removesuffix("/v1") + "/metrics").text
        return " ".join(line.split("lingcoder_")[1] for line in text.splitlines()
                        if line.startswith("lingcoder_") and ("steps" in line or "max_rows" in line))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_server(model_dir: Path, python: str | None, threads: int, dtype: str):
    """vLLM's OpenAI server on `model_dir` with `threads` OpenMP threads, unbound like lingcoder's."""
    from lingcoder.vllm_server import VLLMServer

    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"  # inherit OMP_NUM_THREADS as lingcoder does
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return VLLMServer(model_dir, dtype=dtype, python=python, max_model_len=2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint directory (default: a random model, --preset)")
    parser.add_argument("--preset", default="small", help="preset of the random model (default: small)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=2, help="threads of every engine (default: 2)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (also: 1 client)")
    parser.add_argument("--requests", type=int, default=16, help="requests per measurement at --clients")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vllm-python", default=None, help="python of vLLM's environment")
    parser.add_argument("--no-vllm", action="store_true", help="measure lingcoder only")
    parser.add_argument("--compare-src", default=None, help="another lingcoder `src` tree (or its repo root)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else random_checkpoint(Path(tmp), args.preset, args.dtype)
        servers = {"lingcoder": LingcoderServer(model_dir, SRC, args.threads, args.clients, args.dtype)}
        if args.compare_src:
            other = Path(args.compare_src).resolve()
            other = other / "src" if (other / "src" / "lingcoder").is_dir() else other
            servers[f"lingcoder@{other.parent.name}"] = LingcoderServer(model_dir, other, args.threads,
                                                                        args.clients, args.dtype)
        if not args.no_vllm:
            servers["vllm"] = vllm_server(model_dir, args.vllm_python or os.environ.get("LINGCODER_VLLM_PYTHON"),
                                          args.threads, args.dtype)
        loads = {1: max(args.requests // 2, 2), args.clients: args.requests}  # clients -> requests
        texts = prompts(args.requests)
        seconds = {(name, c): [] for name in servers for c in loads}
        tokens: dict[tuple[str, int], int] = {}
        started = []
        try:
            for server in servers.values():
                started.append(server.start())
                run(server.base_url, server.model_name, texts[:2], 2, 4)  # warm-up
            for _ in range(args.rounds):
                for clients, count in loads.items():
                    for name, server in servers.items():
                        elapsed, tokens[name, clients] = run(server.base_url, server.model_name, texts[:count],
                                                             clients, args.max_tokens)
                        seconds[name, clients].append(elapsed)
            engine_stats = servers["lingcoder"].metrics()
        finally:
            for server in started:
                server.stop()

    reference = "vllm" if "vllm" in servers else "lingcoder"
    load = os.getloadavg()
    print(f"{model_dir.name}, {args.dtype}, {args.threads} threads per engine, greedy, max {args.max_tokens} "
          f"tokens per request, {args.rounds} alternating rounds (medians), load average {load[0]:.1f}")
    print(f"{'engine':<22}{'clients':>8}{'requests':>9}{'seconds':>9}{'tokens/s':>10}{'vs ' + reference:>12}")
    for clients, count in loads.items():
        base = tokens[reference, clients] / statistics.median(seconds[reference, clients])
        for name in servers:
            rate = tokens[name, clients] / statistics.median(seconds[name, clients])
            print(f"{name:<22}{clients:>8}{count:>9}{statistics.median(seconds[name, clients]):>9.2f}"
                  f"{rate:>10.1f}{rate / base:>11.2f}x")
    print("lingcoder engine:", engine_stats)


if __name__ == "__main__":
    main()
