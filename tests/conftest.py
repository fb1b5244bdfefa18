"""Shared fixtures: small random models that run in milliseconds on a CPU."""

import dataclasses
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lingcoder.data.tokenize import TokenizeConfig, TokenizerTrainConfig, tokenize, train_tokenizer_on_parquet
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM

# Small, stable, pure-Python standard-library modules: real code every installation carries.
STDLIB_MODULES = ["textwrap", "string", "bisect", "heapq", "fnmatch", "shlex", "glob", "colorsys", "keyword",
                  "calendar", "copy", "queue", "sched", "statistics", "graphlib", "operator", "functools", "random"]


def embedded_text() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / f"{name}.py").read_text(encoding="utf-8") for name in STDLIB_MODULES]


# The `[model]` table of `micro_config` for TOML configs (with the vocabulary of the `tokenizer_dir` fixture).
MICRO_MODEL_TABLE = """
[model]
preset = "tiny"
vocab_size = 512
hidden_size = 32
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
head_dim = 8
num_experts = 8
num_experts_per_tok = 2
moe_intermediate_size = 16
intermediate_size = 48
"""

# A recipe up to pretraining on a `repos` directory of files, for `str.format(model=..., repos=..., workers=...)`.
RECIPE_PRETRAIN_TABLES = """
[run]
out = "unused"
workers = {workers}

[curate]
sources = ["{repos}"]
quality = {{ high_quality_threshold = 40.0 }}  # most of these files are high quality: a held-out set exists

[tokenizer]
vocab_size = 512

[tokenize]
val_fraction = 0.5

{model}
[data]
seq_len = 64
eval_tokens = 2048

[train]
micro_batch_size = 4
eval_every = 4
checkpoint_every = 4
keep_checkpoints = 3

[[phases]]
name = "one"
tokens = 2048
mixture = {{ "file-high" = 1.0 }}  # the 2 repository samples may both fall in validation
schedule = {{ kind = "cosine", lr_start = 3e-3, lr_end = 3e-4 }}

"""


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Micro models gain nothing from intra-op threads and lose a lot to them on shared cores (up to 30x
    measured here), where the sandboxed programs and the server's engine thread also run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def micro_config(**overrides) -> BailingMoeConfig:
    """Smaller than the `tiny` preset, with NormHead as in the real model: every code path, a fraction of the cost."""
    base = BailingMoeConfig.preset(
        "tiny", vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, num_experts=8, num_experts_per_tok=2, num_shared_experts=1,
        moe_intermediate_size=16, intermediate_size=48, max_position_embeddings=256, norm_head=True,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def micro_model() -> BailingMoeForCausalLM:
    torch.manual_seed(0)
    return BailingMoeForCausalLM(micro_config()).eval()


def write_parquet(path, ids, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "content": texts, "repo": ["r"] * len(ids)}), path)


@pytest.fixture(scope="session")
def curated(tmp_path_factory):
    """A curated-like directory: two sources, three files, a drop log that must be ignored."""
    root = tmp_path_factory.mktemp("curated")
    texts = embedded_text()
    chunks = [t[i : i + 2000] for t in texts for i in range(0, len(t), 2000)]
    write_parquet(root / "file" / "high" / "00000.parquet", [f"h{i}" for i in range(0, 60)], chunks[:60])
    write_parquet(root / "file" / "high" / "00001.parquet", [f"h{i}" for i in range(60, 90)], chunks[60:90])
    write_parquet(root / "repo" / "00000.parquet", [f"r{i}" for i in range(30)], chunks[90:120])
    write_parquet(root / "dropped" / "00000.parquet", ["d0"], ["not training data"])
    return root


@pytest.fixture(scope="session")
def tokenizer_dir(curated, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    report = train_tokenizer_on_parquet(TokenizerTrainConfig(str(curated), str(out), vocab_size=512))
    assert report["round_trip_ok"] == report["documents"] == 120  # the drop log is not read
    return out


@pytest.fixture(scope="session")
def tokens_dir(curated, tokenizer_dir, tmp_path_factory):
    """Token shards of the `curated` fixture (sources `file-high` and `repo`, 10% validation)."""
    out = tmp_path_factory.mktemp("tokens") / "tokens"
    tokenize(TokenizeConfig(str(tokenizer_dir), str(out), curated=str(curated), val_fraction=0.1, workers=1))
    return out
