"""Pretraining: schedules, mixtures, the loop, checkpoints loaded by `generate`, exact resume after a
kill, FSDP2 across two CPU processes, and bad input caught before training starts."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lingcoder.data.shards import TokenIndex
from lingcoder.errors import LingcoderError
from lingcoder.generation.generate import generate, load_for_generation
from lingcoder.runfiles import read_metrics
from lingcoder.train.config import load_pretrain_config
from lingcoder.train.data import MixtureSampler
from lingcoder.train.pretrain import pretrain
from lingcoder.train.schedules import ScheduleConfig, learning_rate

from .conftest import MICRO_MODEL_TABLE

CONFIG = """
{model}
[data]
tokens = "{tokens}"
seq_len = 64
eval_tokens = 2048

[train]
out = "{out}"
micro_batch_size = 4
eval_every = 5
checkpoint_every = 4

[[phases]]
name = "stage1"
tokens = {tokens1}
mixture = {{ "file-high" = 0.7, "repo" = 0.3 }}
schedule = {{ kind = "multistep", lr_start = 3e-3, lr_end = 1.5e-3, warmup_steps = 2 }}

[[phases]]
name = "anneal"
tokens = 2560
mixture = {{ "file-high" = 0.2, "repo" = 0.8 }}
schedule = {{ kind = "inverse_sqrt", lr_start = 1.5e-3, lr_end = 1.5e-5 }}
"""


def write_config(tmp_path, tokens_dir, name="run", tokens1=5120) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(CONFIG.format(model=MICRO_MODEL_TABLE, tokens=tokens_dir, out=tmp_path / name, tokens1=tokens1))
    return path


def lingcoder(*args, env_extra=None, **kwargs):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lingcoder", *args], capture_output=True, text=True, env=env,
                          timeout=600, **kwargs)


def train_losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["lm_loss"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"}


@pytest.mark.parametrize(
    ("schedule", "points"),
    [
        (ScheduleConfig("constant", 1.0, 0.0, warmup_steps=4), {0: 0.25, 3: 1.0, 50: 1.0, 100: 1.0}),
        (ScheduleConfig("multistep", 3e-4, 1.5e-4, milestones=[0.5]), {0: 3e-4, 49: 3e-4, 50: 1.5e-4, 100: 1.5e-4}),
        (ScheduleConfig("multistep", 8.0, 1.0, milestones=[0.25, 0.5, 0.75]), {0: 8.0, 30: 4.0, 60: 2.0, 100: 1.0}),
        (ScheduleConfig("cosine", 1.4e-4, 1.1e-4), {0: 1.4e-4, 50: 1.25e-4, 100: 1.1e-4}),
        (ScheduleConfig("inverse_sqrt", 1.4e-4, 1.4e-6), {0: 1.4e-4, 100: 1.4e-6}),
        (ScheduleConfig("wsd", 1.0, 0.1, decay_fraction=0.2), {0: 1.0, 80: 1.0, 90: 0.55, 100: 0.1}),
    ],
)
def test_schedules_hit_their_shape(schedule, points):
    for step, expected in points.items():
        assert learning_rate(schedule, step, 101) == pytest.approx(expected, rel=1e-6), step  # 1/100 a step


def test_inverse_sqrt_decays_fast_then_slowly():
    s = ScheduleConfig("inverse_sqrt", 1.0, 0.01)
    lrs = [learning_rate(s, i, 101) for i in range(101)]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[0] - lrs[10] > lrs[90] - lrs[100]


def test_mixture_follows_its_weights_and_ranks_split_one_global_batch(tokens_dir):
    index = TokenIndex(tokens_dir)
    sampler = MixtureSampler(index, ["file-high", "repo"], 32, seed=1)
    sources = [s for _ in range(50) for s in sampler.next_batch({"file-high": 3, "repo": 1}, 16, 0, 16).sources]
    assert abs(sources.count("file-high") / len(sources) - 0.75) < 0.05
    whole = MixtureSampler(index, ["file-high", "repo"], 32, seed=2).next_batch({"file-high": 1, "repo": 1}, 8, 0, 8)
    halves = [MixtureSampler(index, ["file-high", "repo"], 32, seed=2).next_batch({"file-high": 1, "repo": 1}, 8, r, 4)
              for r in (0, 1)]
    assert torch.equal(torch.cat([h.input_ids for h in halves]), whole.input_ids)
    assert torch.equal(whole.input_ids[:, 1:], whole.targets[:, :-1])


def test_pretrain_runs_phases_logs_metrics_and_its_checkpoint_generates(tokens_dir, tmp_path):
    config = load_pretrain_config(write_config(tmp_path, tokens_dir))
    result = pretrain(config)
    assert result.steps == 20 + 10 and result.tokens == 30 * 256
    records = read_metrics(result.out / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["phase"] for r in train] == ["stage1"] * 20 + ["anneal"] * 10
    assert train[0]["lr"] == pytest.approx(1.5e-3) and train[-1]["lr"] == pytest.approx(1.5e-5)
    first = train[0]
    for key in ("lm_loss", "aux_loss", "grad_norm", "tokens_per_s", "mfu", "expert_load_max_over_mean",
                "router_entropy"):
        assert key in first, key
    assert len(first["expert_load_max_over_mean"]) == 2 and first["mfu"] > 0
    val = [r for r in records if r["kind"] == "val"]
    assert {r["step"] for r in val} >= {5, 20, 30} and set(val[-1]["val_loss_by_source"]) == {"file-high", "repo"}
    assert val[-1]["val_loss"] < val[0]["val_loss"]
    assert np.mean([r["lm_loss"] for r in train[-5:]]) < np.mean([r["lm_loss"] for r in train[:5]])
    checkpoints = sorted(p.name for p in (result.out / "checkpoints").iterdir())
    assert checkpoints == ["step-00000028", "step-00000030"]  # keep_checkpoints = 2

    model, tokenizer = load_for_generation(result.checkpoint)
    assert generate(model, tokenizer, ["def "], max_new_tokens=5)[0] != ""


def test_resume_after_a_kill_gives_the_same_loss_at_every_later_step(tokens_dir, tmp_path):
    quick = ["--set", "train.eval_every=1000"]
    full = write_config(tmp_path, tokens_dir, "full", tokens1=10240)
    assert lingcoder("pretrain", str(full), *quick).returncode == 0
    expected = train_losses(tmp_path / "full")

    killed = write_config(tmp_path, tokens_dir, "killed", tokens1=10240)
    proc = subprocess.Popen([sys.executable, "-m", "lingcoder", "pretrain", str(killed), *quick],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = tmp_path / "killed" / "checkpoints" / "step-00000008"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.exists()
    before = train_losses(tmp_path / "killed")
    assert max(before) < max(expected), "the run finished before it could be killed"

    resumed = lingcoder("pretrain", str(killed), "--resume", *quick)
    assert resumed.returncode == 0, resumed.stderr
    after = train_losses(tmp_path / "killed")
    assert sorted(after) == sorted(expected)
    assert all(after[s] == expected[s] for s in expected), "resumed losses differ from the uninterrupted run"


def test_two_fsdp2_processes_match_one_process_with_the_same_global_batch(tokens_dir, tmp_path):
    config = write_config(tmp_path, tokens_dir, "single")
    one = lingcoder("pretrain", str(config), "--set", "train.micro_batch_size=4", "--set", "phases=[]",
                    "--set", 'phases=[{name="p",tokens=2560,mixture={"file-high"=1.0},'
                                    'schedule={kind="constant",lr_start=1e-3}}]')
    assert one.returncode == 0, one.stderr
    two_config = write_config(tmp_path, tokens_dir, "fsdp")
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lingcoder", "pretrain",
                          str(two_config), "--set", "train.micro_batch_size=2",
                          "--set", 'phases=[{name="p",tokens=2560,mixture={"file-high"=1.0},'
                                   'schedule={kind="constant",lr_start=1e-3}}]'],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    single, sharded = train_losses(tmp_path / "single"), train_losses(tmp_path / "fsdp")
    assert sorted(single) == sorted(sharded) == list(range(1, 11))
    for step in single:
        assert sharded[step] == pytest.approx(single[step], rel=2e-3, abs=2e-3), step
    model, _ = load_for_generation(tmp_path / "fsdp" / "checkpoints" / "step-00000010")
    assert model.num_parameters() > 0


def test_bad_input_fails_before_training(tokens_dir, tmp_path):
    config = write_config(tmp_path, tokens_dir)
    cases = [
        (["phases=[]"], "at least one"),
        (['phases=[{name="p",tokens=100,mixture={"nope"=1.0}}]'], "mixture source 'nope' is not in"),
        (["model.vocab_size=300"], "vocabulary of 512 tokens, more than the model's vocab_size 300"),
        (["train.micro_batch_size=100000000"], "lower micro_batch_size"),
        (["data.seq_len=4096"], "exceeds the model's max_position_embeddings"),
        (["model.num_experts=many"], "model.num_experts: expected int"),
    ]
    for overrides, message in cases:
        with pytest.raises(LingcoderError, match=message):
            pretrain(load_pretrain_config(config, overrides))
    with pytest.raises(LingcoderError, match="no complete checkpoint"):
        pretrain(load_pretrain_config(config), resume=True)
    missing = tmp_path / "tokens-missing"
    import shutil

    shutil.copytree(tokens_dir, missing)
    next((missing / "repo" / "train").glob("*.bin")).unlink()
    with pytest.raises(LingcoderError, match="listed in index.json is missing"):
        pretrain(load_pretrain_config(config, [f'data.tokens="{missing}"']))
    result = lingcoder("pretrain", str(config), "--set", "train.micro_batch_size=0")
    assert result.returncode == 2 and "train.micro_batch_size must be > 0" in result.stderr


def test_torch_compile_trains_like_eager(tokens_dir, tmp_path):
    phase = ['phases=[{name="p",tokens=512,mixture={"file-high"=1.0},schedule={kind="constant",lr_start=1e-3}}]']
    eager = pretrain(load_pretrain_config(write_config(tmp_path, tokens_dir, "eager"), phase))
    compiled = pretrain(load_pretrain_config(write_config(tmp_path, tokens_dir, "compiled"),
                                             [*phase, "train.compile=true"]))
    assert compiled.steps == eager.steps == 2
    losses = train_losses(tmp_path / "eager"), train_losses(tmp_path / "compiled")
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
