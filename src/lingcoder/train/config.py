"""The pretraining config: model, data, optimiser and a list of phases (docs/training.md).

A TOML file has a `[model]` table (see `resolve_model_config`), `[data]`, `[train]` and one
`[[phases]]` table per phase, each with its token budget, mixture and `[phases.schedule]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lingcoder.config import apply_overrides, from_dict, load_toml, without_tables
from lingcoder.errors import LingcoderError
from lingcoder.model import BailingMoeConfig
from lingcoder.model.config import model_config_from_table
from lingcoder.train.schedules import ScheduleConfig


@dataclass
class DataConfig:
    tokens: str = "runs/tiny/tokens"  # a `lingcoder tokenize` output directory
    seq_len: int = 256
    eval_tokens: int = 65536  # validation tokens per source


@dataclass
class TrainConfig:
    out: str = "runs/tiny/pretrain"
    init_from: str = ""  # an HF checkpoint directory to continue from (Ling-lite -> Ling-Coder-lite)
    micro_batch_size: int = 8  # sequences per process per micro-step
    grad_accum: int = 1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip: float = 1.0
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU; or "fp32", "bf16"
    compile: bool = False
    activation_checkpointing: bool = False  # recompute each block in backward: less memory, more compute
    expert_parallel: int = 1  # processes sharing out each MoE layer's experts (consecutive ranks; FSDP2 over the rest)
    device: str = "auto"
    log_every: int = 1
    eval_every: int = 50
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    peak_tflops: float = 0.0  # for MFU; 0 = look the device up (estimated on CPUs)


@dataclass
class PhaseConfig:
    name: str = "stage1"
    tokens: int = 1_000_000
    mixture: dict[str, float] = field(default_factory=dict)  # source -> weight (normalised)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class PretrainConfig:
    model: BailingMoeConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    phases: list[PhaseConfig] = field(default_factory=list)

    def tokens_per_step(self, world_size: int) -> int:
        return self.data.seq_len * self.train.micro_batch_size * self.train.grad_accum * world_size

    def phase_steps(self, world_size: int) -> list[int]:
        per_step = self.tokens_per_step(world_size)
        return [max(1, -(-phase.tokens // per_step)) for phase in self.phases]


def load_pretrain_config(path: str | Path, overrides: list[str] = ()) -> PretrainConfig:
    """Read a pretraining TOML file; `--set section.key=value` overrides any value."""
    return pretrain_config_from_dict(apply_overrides(load_toml(path), list(overrides)))


def pretrain_config_from_dict(data: dict) -> PretrainConfig:
    """The pretraining tables of a config already read (the other stages' tables are skipped)."""
    data = without_tables(data)
    model = model_config_from_table(data.pop("model", {}))
    data.setdefault("phases", [])
    config = from_dict(PretrainConfig, {**data, "model": model})
    validate(config)
    return config


def validate(config: PretrainConfig) -> None:
    if not config.phases:
        raise LingcoderError("config: at least one [[phases]] table is needed")
    for i, phase in enumerate(config.phases):
        where = f"phases[{i}] ({phase.name})"
        if phase.tokens <= 0:
            raise LingcoderError(f"{where}.tokens must be > 0")
        if not phase.mixture or any(w < 0 for w in phase.mixture.values()) or sum(phase.mixture.values()) <= 0:
            raise LingcoderError(f"{where}.mixture needs at least one source with a positive weight")
    check_train_fields(config.train, "train")
    if config.data.seq_len > config.model.max_position_embeddings:
        raise LingcoderError(f"data.seq_len {config.data.seq_len} exceeds the model's max_position_embeddings "
                             f"{config.model.max_position_embeddings}")


def check_train_fields(t: TrainConfig, table: str) -> None:
    """The checks of the fields every training stage shares; `table` names the config table in messages."""
    for name in ("micro_batch_size", "grad_accum", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        if getattr(t, name) <= 0:
            raise LingcoderError(f"{table}.{name} must be > 0")
    if t.expert_parallel < 1:
        raise LingcoderError(f"{table}.expert_parallel must be >= 1, got {t.expert_parallel}")
    if t.precision not in ("auto", "fp32", "bf16"):
        raise LingcoderError(f"{table}.precision must be auto, fp32 or bf16, got {t.precision!r}")

