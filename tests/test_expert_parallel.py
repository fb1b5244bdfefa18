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
