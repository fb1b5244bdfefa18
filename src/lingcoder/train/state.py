"""Training checkpoints: the model in the HF layout plus `train_state.pt` (optimiser, counters, data
sampler and RNG states), so that any checkpoint loads in `generate`, `eval` and vLLM as it is,
and `--resume` continues exactly. Under expert parallelism the experts are gathered into whole tensors
before saving and sliced again on loading, so the files are the same whatever the parallelism.

A checkpoint is written into `step-N.tmp/` and renamed to `step-N/` only when complete, so a kill
at any moment leaves the previous complete checkpoint intact; leftover `.tmp` folders are ignored
and cleaned up. Finding complete checkpoints needs no torch: `lingcoder.runfiles`.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeConfig
from lingcoder.model.checkpoint import load_checkpoint, save_state_dict
from lingcoder.model.expert_parallel import gather_experts, slice_experts
from lingcoder.runfiles import TRAIN_STATE, checkpoint_name, complete_checkpoints
from lingcoder.train.distributed import DistEnv, barrier

FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


def save_training_checkpoint(root: Path, step: int, model, optimizer, config: BailingMoeConfig, state: dict,
                             tokenizer_dir: Path, env: DistEnv, keep: int) -> Path:
    """Gather the full model and optimiser state (a collective: every rank calls this); rank 0 writes."""
    model_state = gather_experts(get_model_state_dict(model, options=FULL_ON_CPU), model, env.device)
    optim_state = get_optimizer_state_dict(model, optimizer, options=FULL_ON_CPU)
    optim_state["state"] = gather_experts(optim_state.get("state", {}), model, env.device, optimizer)
    final = root / checkpoint_name(step)
    if env.is_main:
        tmp = root / f"{checkpoint_name(step)}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_state_dict(model_state, config, tmp)
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (tokenizer_dir / name).is_file():
                shutil.copy(tokenizer_dir / name, tmp / name)
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        torch.save({"optimizer": optim_state, "rng": rng, **state}, tmp / TRAIN_STATE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_training_checkpoint(path: Path, model, optimizer) -> dict:
    """Fill `model` (plain or FSDP2-sharded) and `optimizer` from a checkpoint; return its train state."""
    if not (path / TRAIN_STATE).is_file():
        raise LingcoderError(f"{path}: no {TRAIN_STATE} (not a training checkpoint)")
    full = slice_experts(load_checkpoint(path, dtype=torch.float32, device="cpu").state_dict(), model)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True))
    state = torch.load(path / TRAIN_STATE, map_location="cpu", weights_only=False)
    optim_state = state.pop("optimizer")
    optim_state["state"] = slice_experts(optim_state["state"], model)
    set_optimizer_state_dict(model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))
    rng = state.pop("rng")
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    return state


def remove_partial_checkpoints(root: Path) -> None:
    for tmp in root.glob("step-*.tmp") if root.is_dir() else []:
        shutil.rmtree(tmp, ignore_errors=True)
