"""Server throughput: N concurrent clients (sharing decode steps) vs the same requests one at a time.

One server (`serve_in_background`) answers the same greedy /v1/completions requests twice per round:
`sequential` (one client, each request after the previous one) and `concurrent` (N clients at once, so the
engine decodes their rows together). Rounds alternate the two modes and the table shows medians and the
ratio to sequential, measured side by side in one run. Without --model, a randomly initialised `tiny`
preset checkpoint with a tokenizer trained on the standard library is built in a temporary directory
(random weights decode as fast as trained ones; their answers are nonsense, and some end early at EOS,
which is why tokens/s counts the tokens each reply reports).

    python benchmarks/serve.py                           # CPU, tiny random model, 16 requests x 64 tokens
    python benchmarks/serve.py --model runs/demo/... --device cuda --requests 64 --clients 32
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

from lingcoder.data.tokenizer import train_tokenizer
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM
from lingcoder.serve.server import serve_in_background

PROMPT_FILES = ["textwrap", "string", "bisect", "heapq", "fnmatch", "shlex", "glob", "colorsys"]


def stdlib_texts() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / f"{name}.py").read_text(encoding="utf-8") for name in PROMPT_FILES]


def random_checkpoint(directory: Path) -> Path:
    tokenizer = train_tokenizer(stdlib_texts(), vocab_size=1024)
    torch.manual_seed(0)
    model = BailingMoeForCausalLM(BailingMoeConfig.preset("tiny", vocab_size=tokenizer.get_vocab_size()))
    model.save_pretrained(directory / "tiny-random", tokenizer=tokenizer)
    return directory / "tiny-random"


def prompts(count: int) -> list[str]:
    """Code prefixes of a few hundred characters, cut from different places of the standard library."""
    text = "".join(stdlib_texts())
    step = len(text) // count
    return [text[i * step : i * step + 300] for i in range(count)]


def run(url: str, model: str, requests: list[str], clients: int, max_tokens: int) -> tuple[float, int]:
    """Seconds to answer every request with `clients` parallel clients, and completion tokens generated."""
    def ask(prompt: str) -> int:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        reply = http.post(url + "/completions", json=body, timeout=600)
        reply.raise_for_status()
        return reply.json()["usage"]["completion_tokens"]

    with httpx.Client(limits=httpx.Limits(max_connections=clients)) as http, ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        tokens = sum(pool.map(ask, requests))
        return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint directory (default: a random tiny model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else random_checkpoint(Path(tmp))
        requests = prompts(args.requests)
        with serve_in_background(model_dir, device=args.device, max_batch_size=args.clients) as url:
            name = httpx.get(url + "/models").json()["data"][0]["id"]
            run(url, name, requests[:2], 2, 4)  # warm-up
            modes = {"sequential": 1, "concurrent": args.clients}
            seconds: dict[str, list[float]] = {mode: [] for mode in modes}
            tokens: dict[str, int] = {}
            for _ in range(args.rounds):
                for mode, clients in modes.items():
                    elapsed, tokens[mode] = run(url, name, requests, clients, args.max_tokens)
                    seconds[mode].append(elapsed)
            stats = httpx.get(url.removesuffix("/v1") + "/metrics").text

    print(f"{args.requests} requests x max {args.max_tokens} tokens, greedy, device {args.device}, "
          f"{args.rounds} rounds (medians), torch threads {torch.get_num_threads()}")
    print(f"{'mode':<12}{'clients':>8}{'seconds':>10}{'req/s':>10}{'tokens/s':>11}{'ratio':>8}")
    base = statistics.median(seconds["sequential"])
    for mode, clients in modes.items():
        median = statistics.median(seconds[mode])
        print(f"{mode:<12}{clients:>8}{median:>10.2f}{args.requests / median:>10.2f}"
              f"{tokens[mode] / median:>11.1f}{base / median:>7.2f}x")
    if tokens["sequential"] != tokens["concurrent"]:
        print(f"note: completion tokens differ between modes ({tokens})")
    print("engine:", " ".join(line.split("lingcoder_")[1] for line in stats.splitlines()
                              if line.startswith("lingcoder_") and ("steps" in line or "decoded" in line
                                                                    or "max_rows" in line)))


if __name__ == "__main__":
    main()
