"""Expert parallelism under torchrun on CPU (gloo): EP=2 on two processes and EP=2 x FSDP=2 on four, each
checked against the same model whole in one process (losses, gradients, clipping, an AdamW step, the
gathered state dict), with random routing and with experts and a whole process that receive no tokens."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lingcoder.errors import LingcoderError
from lingcoder.train.distributed import DistEnv, parallelize

WORKER = Path(__file__).with_name("ep_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", str(processes), str(WORKER), *args],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize(("processes", "expert_parallel"), [(2, 2), (4, 2)], ids=["ep2", "ep2xfsdp2"])
def test_expert_parallel_matches_one_process(processes, expert_parallel):
    result = torchrun(processes, str(expert_parallel))
    assert result.returncode == 0, result.stderr[-4000:]
    for case in ("random-routing", "idle-experts"):
        for rank in range(processes):
            assert f"ok {case} rank {rank}" in result.stdout, result.stdout


def test_expert_parallel_size_must_divide_the_processes():
    import torch

    with pytest.raises(LingcoderError, match="expert_parallel=3 must be >= 1 and divide the number of processes"):
        parallelize(torch.nn.Linear(2, 2), DistEnv(0, 4, torch.device("cpu")), 3)


PRETRAIN = """
{model}
[data]
tokens = "{tokens}"
seq_len = 32
eval_tokens = 512

[train]
out = "{out}"
micro_batch_size = 2
eval_every = 1000
checkpoint_every = 3
expert_parallel = 2

[[phases]]
name = "p"
tokens = 768
mixture = {{ "file-high" = 1.0 }}
schedule = {{ kind = "constant", lr_start = 3e-3 }}
"""


def pretrain_under_torchrun(config: Path, *args: str) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lingcoder", "pretrain",
                           str(config), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_pretraining_under_expert_parallelism_saves_hf_checkpoints_and_resumes_exactly(tokens_dir, tmp_path):
    from safetensors import safe_open

    from lingcoder.model import BailingMoeForCausalLM
    from lingcoder.runfiles import read_metrics

    from .conftest import MICRO_MODEL_TABLE

    config = tmp_path / "ep.toml"
    config.write_text(PRETRAIN.format(model=MICRO_MODEL_TABLE, tokens=tokens_dir, out=tmp_path / "ep"))
    first = pretrain_under_torchrun(config)
    assert first.returncode == 0, first.stderr[-4000:]
    metrics = tmp_path / "ep" / "metrics.jsonl"
    losses = {r["step"]: r["lm_loss"] for r in read_metrics(metrics) if r["kind"] == "train"}
    assert sorted(losses) == list(range(1, 7))  # 768 tokens / (2 processes x 2 rows x 32 tokens)

    final = tmp_path / "ep" / "checkpoints" / "step-00000006"
    with safe_open(str(final / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert f.get_slice("model.layers.1.mlp.experts.7.down_proj.weight").get_shape() == [32, 16]
    assert {f"model.layers.0.mlp.experts.{e}.gate_proj.weight" for e in range(8)} <= keys  # vLLM's names
    assert not any(k.endswith("experts.gate_proj") for k in keys)
    model = BailingMoeForCausalLM.from_pretrained(final)  # one process, every expert whole
    assert model.model.layers[0].mlp.experts.gate_proj.shape == (8, 16, 32)

    # Resume from step 3 as if killed after it: the later steps repeat exactly.
    import shutil

    shutil.rmtree(final)
    kept = [line for line in metrics.read_text().splitlines() if '"step": ' in line and
            __import__("json").loads(line)["step"] <= 3]
    metrics.write_text("\n".join(kept) + "\n")
    resumed = pretrain_under_torchrun(config, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    again = {r["step"]: r["lm_loss"] for r in read_metrics(metrics) if r["kind"] == "train"}
    assert sorted(again) == list(range(1, 7))
    assert all(again[s] == losses[s] for s in range(4, 7)), (losses, again)
