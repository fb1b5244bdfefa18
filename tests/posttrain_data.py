"""Helpers of the SFT and DPO tests: a micro checkpoint carrying the project's tokenizer and chat template,
small Ling-style record files, and configs with [sft] / [dpo] tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer

from lingcoder.data.tokenizer import save_tokenizer
from lingcoder.model import BailingMoeForCausalLM

from .conftest import micro_config


def make_checkpoint(directory: Path, tokenizer_dir: Path) -> Path:
    torch.manual_seed(0)
    model = BailingMoeForCausalLM(micro_config(vocab_size=512))
    model.save_pretrained(directory)
    save_tokenizer(Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")), directory,
                   model_max_length=model.config.max_position_embeddings)
    return directory


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def sft_records(n: int) -> list[dict]:
    return [{"mid": f"sft-{i}", "messages": [
        {"role": "HUMAN", "content": f"Write a function that returns {i}."},
        {"role": "ASSISTANT", "content": f"def answer():\n    return {i}\n"}], "tags": ["python"],
        "languages": ["en"]} for i in range(n)]


def dpo_records(n: int) -> list[dict]:
    return [{"mid": f"dpo-{i}", "prompt": f"Write a function that returns {i}.",
             "chosen": f"def answer():\n    return {i}\n", "rejected": f"def answer():\n    print({i} + 1)\n"}
            for i in range(n)]


def write_config(path: Path, **tables: dict) -> Path:
    """A TOML file with one table per keyword (values written as TOML literals) and a [model] table to ignore."""
    lines = ["[model]", 'preset = "tiny"', ""]
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(str(value)) if isinstance(value, str | Path) else repr(value)


def lingcoder(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lingcoder", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
