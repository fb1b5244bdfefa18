"""Checkpoints in the Hugging Face layout: `config.json` + `model.safetensors` (or sharded files and
`model.safetensors.index.json`), with exactly the key names of the public `bailing_moe` model.

Routed experts live stacked in memory ([E, F, D]) and one tensor per expert on disk
(`mlp.experts.{e}.gate_proj.weight`); `save_checkpoint` un-stacks, `load_checkpoint` re-stacks.
Loading builds the model on the meta device and fills it tensor by tensor from the mmapped
files, so the weights are never held twice (a real 33.6 GB Ling-Coder-lite directory loads in
one model's worth of memory).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lingcoder.errors import LingcoderError
from lingcoder.model.config import BailingMoeConfig
from lingcoder.model.transformer import BailingMoeForCausalLM

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
STACKED_EXPERTS = re.compile(r"(.*\.mlp\.experts)\.(gate_proj|up_proj|down_proj)")
ONE_EXPERT = re.compile(r"(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight")
_SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}


def hf_tensors(state_dict: dict[str, torch.Tensor], config: BailingMoeConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF key, tensor) pairs in checkpoint order, experts un-stacked (views, no copies)."""
    for name, tensor in state_dict.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        stacked = STACKED_EXPERTS.fullmatch(name)
        if stacked:
            for e in range(tensor.shape[0]):
                yield f"{stacked[1]}.{e}.{stacked[2]}.weight", tensor[e]
        else:
            yield name, tensor


def save_checkpoint(model: BailingMoeForCausalLM, directory: str | Path, max_shard_size: int | str = "5GB"
                    ) -> list[Path]:
    """Write config.json and the weights (sharded above `max_shard_size`); return the weight files.
    The tokenizer is the caller's to save next to them (`data.tokenizer.save_tokenizer`)."""
    return save_state_dict(model.state_dict(), model.config, directory, max_shard_size)


def save_state_dict(state_dict: dict[str, torch.Tensor], config: BailingMoeConfig, directory: str | Path,
                    max_shard_size: int | str = "5GB") -> list[Path]:
    """`save_checkpoint` from a full (unsharded) state dict, e.g. one gathered from FSDP2 ranks."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    limit = parse_size(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    shard_bytes = 0
    for key, tensor in hf_tensors(state_dict, config):
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and shard_bytes + size > limit:
            shards.append({})
            shard_bytes = 0
        shards[-1][key] = tensor
        shard_bytes += size

    for stale in [*directory.glob("model*.safetensors"), directory / INDEX_FILE]:
        stale.unlink(missing_ok=True)
    names = [SINGLE_FILE] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))
    ]
    weight_map, total = {}, 0
    for name, shard in zip(names, shards, strict=True):
        # clone(): un-stacked experts are views of one storage, which safetensors refuses to save.
        save_file({k: t.detach().to("cpu").clone() for k, t in shard.items()}, str(directory / name),
                  metadata={"format": "pt"})
        for key, tensor in shard.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")

    stored_dtype = str(next(iter(state_dict.values())).dtype).removeprefix("torch.")
    config = dataclasses.replace(config, torch_dtype=stored_dtype)
    config.save(directory)
    generation = {"eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return [directory / n for n in names]


def load_checkpoint(directory: str | Path, dtype: torch.dtype | str | None = None,
                    device: str | torch.device = "cpu",
                    config: BailingMoeConfig | None = None) -> BailingMoeForCausalLM:
    """Load a checkpoint directory (ours or a real Ling-Coder-lite download) in `dtype` on `device`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LingcoderError(f"{directory}: checkpoint directory not found")
    on_disk = BailingMoeConfig.load(directory)
    if config is not None:
        _check_same_architecture(config, on_disk, directory)
    config = config or on_disk
    dtype = resolve_dtype(dtype if dtype is not None else config.torch_dtype)
    device = torch.device(device)

    with torch.device("meta"):
        model = BailingMoeForCausalLM(config)
    expected = {name: p.shape for name, p in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    state: dict[str, torch.Tensor] = {}
    experts_seen: dict[str, set[int]] = {}
    unexpected: list[str] = []
    for path in weight_files(directory):
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                for key in f.keys():
                    one = ONE_EXPERT.fullmatch(key)
                    name = f"{one[1]}.{one[3]}" if one else key
                    if name not in expected:
                        unexpected.append(key)
                        continue
                    tensor = f.get_tensor(key).to(dtype)
                    if one:
                        _place_expert(state, experts_seen, name, int(one[2]), tensor, expected[name], key, path)
                    else:
                        _check_shape(key, tensor.shape, expected[name], path)
                        state[name] = tensor
        except SafetensorError as exc:
            raise LingcoderError(f"{path}: unreadable safetensors file: {exc}") from None
    if unexpected:
        raise LingcoderError(
            f"{directory}: {len(unexpected)} unexpected weight(s) for this config, e.g. {unexpected[:5]}"
        )
    missing = [n for n in expected if n not in state]
    missing += [
        f"{name} (experts {sorted(set(range(expected[name][0])) - seen)[:5]})"
        for name, seen in experts_seen.items() if len(seen) != expected[name][0]
    ]
    if missing:
        raise LingcoderError(f"{directory}: {len(missing)} missing weight(s), e.g. {missing[:5]}")
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.word_embeddings.weight
    return model.to(device)


def weight_files(directory: Path) -> list[Path]:
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise LingcoderError(f"{index}: not a safetensors index ({exc})") from None
        files = [directory / name for name in dict.fromkeys(weight_map.values())]
    elif (directory / SINGLE_FILE).is_file():
        files = [directory / SINGLE_FILE]
    else:
        raise LingcoderError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}")
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise LingcoderError(f"{directory}: weight file(s) named in the index are missing: {absent}")
    return files


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise LingcoderError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
    return resolved


def parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B|B)\s*", size.upper())
    if not match:
        raise LingcoderError(f"max_shard_size {size!r}: expected bytes or e.g. '500MB', '5GB'")
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


def _place_expert(state, seen, name, e, tensor, shape, key, path):
    if e >= shape[0]:
        raise LingcoderError(f"{path}: {key}: expert {e} but the config has num_experts={shape[0]}")
    _check_shape(key, tensor.shape, shape[1:], path)
    if name not in state:
        state[name] = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
        seen[name] = set()
    state[name][e].copy_(tensor)
    seen[name].add(e)


def _check_shape(key, got, want, path):
    if tuple(got) != tuple(want):
        raise LingcoderError(
            f"{path}: {key} has shape {list(got)} but the config needs {list(want)} (config does not match weights?)"
        )


def _check_same_architecture(given: BailingMoeConfig, on_disk: BailingMoeConfig, directory: Path) -> None:
    fields = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "head_dim", "num_experts", "num_shared_experts", "moe_intermediate_size", "intermediate_size",
              "first_k_dense_replace", "tie_word_embeddings"]
    diff = [f"{f}: given {getattr(given, f)} vs {getattr(on_disk, f)}" for f in fields
            if getattr(given, f) != getattr(on_disk, f)]
    if diff:
        raise LingcoderError(f"{directory}: config does not match the checkpoint's config.json: {'; '.join(diff)}")
