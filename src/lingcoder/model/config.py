"""`BailingMoeConfig`: the architecture's hyper-parameters, with the HF `config.json` field names.

Presets: `ling-coder-lite` (the real model, docs/architecture.md), `small` (one GPU), `tiny` (a CPU
in minutes). `dense()` turns any config into its dense twin in the same code path: every layer
is a plain SwiGLU MLP (HF's `first_k_dense_replace` = all layers) whose width equals the FFN
width a token activates in the MoE (top-k + shared experts), so both read the same parameters
per token.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lingcoder.errors import LingcoderError

MODEL_TYPE = "bailing_moe"
ARCHITECTURE = "BailingMoeForCausalLM"
# transformers' config class for checkpoints, a stand-alone file copied next to every config.json.
HF_CONFIG_CODE = Path(__file__).with_name("configuration_bailing_moe.py")
AUTO_MAP = {"AutoConfig": f"{HF_CONFIG_CODE.stem}.BailingMoeConfig"}


@dataclass
class BailingMoeConfig:
    vocab_size: int = 126464
    hidden_size: int = 2048
    intermediate_size: int = 5632
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 4
    head_dim: int | None = 128
    hidden_act: str = "silu"
    use_qkv_bias: bool = False
    use_bias: bool = False
    rms_norm_eps: float = 1e-6
    norm_head: bool = True
    tie_word_embeddings: bool = False
    initializer_range: float = 0.006
    max_position_embeddings: int = 16384
    rope_theta: float = 600000.0
    rope_scaling: dict | None = None
    num_experts: int = 64
    num_shared_experts: int = 2
    num_experts_per_tok: int = 6
    norm_topk_prob: bool = True
    moe_intermediate_size: int = 1408
    first_k_dense_replace: int = 0
    # Router scoring (Ling 2.0 / DeepSeek-V3 names, read by vLLM): "softmax" or "sigmoid" scores; with
    # `moe_router_enable_expert_bias` a per-expert bias (`mlp.gate.expert_bias`) steers which experts are
    # chosen, not their weights; top-k within the `topk_group` best of `n_group` expert groups; the
    # chosen weights scaled by `routed_scaling_factor`.
    score_function: str = "softmax"
    moe_router_enable_expert_bias: bool = False
    routed_scaling_factor: float = 1.0
    n_group: int | None = None
    topk_group: int | None = None
    pad_token_id: int = 126081
    eos_token_id: int = 126081
    bos_token_id: int | None = None
    embedding_dropout: float = 0.0
    attention_dropout: float = 0.0
    output_dropout: float = 0.0
    use_cache: bool = True
    torch_dtype: str = "bfloat16"
    # Training-time knobs (ours, not read by HF/vLLM; harmless extra keys in config.json).
    router_aux_loss_coef: float = 0.015
    router_z_loss_coef: float = 1e-4
    moe_router_bias_update_rate: float = 0.0  # > 0: aux-loss-free balancing (trains the expert bias)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown HF keys, kept verbatim

    def __post_init__(self) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.score_function == "sigmoid" and self.n_group is None and self.topk_group is None:
            # One group: the same routing as no grouping, in the form vLLM's CPU router runs sigmoid scores.
            self.n_group = self.topk_group = 1
        self.validate()

    # -- derived -----------------------------------------------------------------------
    @property
    def num_dense_layers(self) -> int:
        return min(self.first_k_dense_replace, self.num_hidden_layers)

    def is_moe_layer(self, layer: int) -> bool:
        return self.num_experts > 0 and layer >= self.first_k_dense_replace

    @property
    def shared_intermediate_size(self) -> int:
        return self.moe_intermediate_size * self.num_shared_experts

    def validate(self) -> None:
        checks = [
            (self.num_attention_heads % self.num_key_value_heads == 0,
             "num_attention_heads must be a multiple of num_key_value_heads"),
            (self.head_dim % 2 == 0, "head_dim must be even (RoPE rotates pairs)"),
            (self.hidden_act == "silu", "only hidden_act = 'silu' (SwiGLU) is supported"),
            (self.num_experts == 0 or 0 < self.num_experts_per_tok <= self.num_experts,
             "num_experts_per_tok must be in 1..num_experts"),
            (self.rope_scaling is None, "rope_scaling is not supported (Ling-Coder-lite uses none)"),
            (self.vocab_size > 0 and self.hidden_size > 0 and self.num_hidden_layers > 0,
             "vocab_size, hidden_size and num_hidden_layers must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise LingcoderError(f"invalid BailingMoeConfig: {message}")
        self._validate_router()

    def _validate_router(self) -> None:
        if self.score_function not in ("softmax", "sigmoid"):
            raise LingcoderError(f"invalid BailingMoeConfig: score_function {self.score_function!r} "
                                 "(known: 'softmax', 'sigmoid')")
        if self.moe_router_bias_update_rate > 0 and not self.moe_router_enable_expert_bias:
            raise LingcoderError("invalid BailingMoeConfig: moe_router_bias_update_rate > 0 (aux-loss-free "
                                 "balancing) trains an expert bias: set moe_router_enable_expert_bias = true")
        if self.moe_router_enable_expert_bias and self.score_function != "sigmoid":
            raise LingcoderError(
                "invalid BailingMoeConfig: an expert bias (moe_router_enable_expert_bias) needs "
                "score_function = 'sigmoid'; vLLM's bailing_moe refuses softmax scores with a bias, so such a "
                "checkpoint could not be served (the Ling 2.0 / DeepSeek-V3 convention is sigmoid + bias)"
            )
        if (self.n_group is None) != (self.topk_group is None):
            raise LingcoderError("invalid BailingMoeConfig: n_group and topk_group are set together or not at all")
        if self.n_group is not None and self.num_experts > 0:
            per_group = self.num_experts // self.n_group if self.n_group > 0 else 0
            ok = (self.n_group > 0 and self.num_experts % self.n_group == 0 and 0 < self.topk_group <= self.n_group
                  and self.num_experts_per_tok <= self.topk_group * per_group
                  and (per_group >= 2 or not self.moe_router_enable_expert_bias))
            if not ok:
                raise LingcoderError(
                    f"invalid BailingMoeConfig: n_group={self.n_group}, topk_group={self.topk_group}: n_group must "
                    f"divide num_experts={self.num_experts}, 1 <= topk_group <= n_group, the chosen groups must "
                    f"hold num_experts_per_tok={self.num_experts_per_tok} experts, and with an expert bias each "
                    "group needs at least 2 experts (a group scores by its best two)"
                )

    # -- presets -----------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> BailingMoeConfig:
        if name not in PRESETS:
            raise LingcoderError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
        return dataclasses.replace(PRESETS[name], **overrides)

    def dense(self) -> BailingMoeConfig:
        """The dense twin: all layers SwiGLU MLPs as wide as the FFN a token activates in the MoE."""
        active_ffn = self.moe_intermediate_size * (self.num_experts_per_tok + self.num_shared_experts)
        width = active_ffn if self.num_experts > 0 else self.intermediate_size
        return dataclasses.replace(self, intermediate_size=width, first_k_dense_replace=self.num_hidden_layers)

    # -- HF config.json ------------------------------------------------------------------
    def to_hf_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **data, "model_type": MODEL_TYPE, "architectures": [ARCHITECTURE], "auto_map": AUTO_MAP}

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any], source: str = "config") -> BailingMoeConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise LingcoderError(f"{source}: model_type is {data.get('model_type')!r}, expected {MODEL_TYPE!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in ("model_type", "architectures")}
        if "head_dim" not in data:
            kwargs["head_dim"] = None
        for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
            if isinstance(kwargs.get(name), list):  # HF allows a list of end tokens; keep the first
                extra[f"{name}_all"] = kwargs[name]
                kwargs[name] = kwargs[name][0]
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as exc:
            raise LingcoderError(f"{source}: {exc}") from None

    def save(self, directory: str | Path) -> None:
        """config.json, and the config class it names in `auto_map` (so transformers and vLLM load it)."""
        path = Path(directory) / "config.json"
        path.write_text(json.dumps(self.to_hf_dict(), indent=2, sort_keys=True) + "\n")
        shutil.copyfile(HF_CONFIG_CODE, Path(directory) / HF_CONFIG_CODE.name)

    @classmethod
    def load(cls, directory: str | Path) -> BailingMoeConfig:
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise LingcoderError(f"{directory}: no config.json (not a checkpoint directory)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise LingcoderError(f"{path}: invalid JSON: {exc}") from None
        return cls.from_hf_dict(data, str(path))


PRESETS: dict[str, BailingMoeConfig] = {
    "ling-coder-lite": BailingMoeConfig(),
    # ~250M total / ~110M active: fits one GPU for real pretraining runs.
    "small": BailingMoeConfig(
        vocab_size=32768, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
        num_attention_heads=12, num_key_value_heads=4, head_dim=64, num_experts=24,
        num_shared_experts=2, num_experts_per_tok=4, moe_intermediate_size=256,
        max_position_embeddings=4096, initializer_range=0.02,
        pad_token_id=0, eos_token_id=0,
    ),
    # A few million parameters: trains on 2 CPU cores in minutes. Without NormHead: a normalised head
    # bounds the logits by the final hidden state's norm, which takes thousands of steps to grow;
    # a few-hundred-step CPU run then barely beats the unigram model (measured: validation loss
    # 6.16 with it vs 5.41 without, unigram entropy 6.54, configs/tiny.toml on the default corpus).
    "tiny": BailingMoeConfig(
        norm_head=False,
        vocab_size=4096, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_experts=16,
        num_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=64,
        max_position_embeddings=2048, rope_theta=10000.0, initializer_range=0.02,
        pad_token_id=0, eos_token_id=0, torch_dtype="float32",
    ),
}


def count_parameters(config: BailingMoeConfig) -> tuple[int, int]:
    """(total, activated per token) parameter counts, computed from the config alone."""
    d, hd = config.hidden_size, config.head_dim
    attention = d * (config.num_attention_heads + 2 * config.num_key_value_heads) * hd
    attention += config.num_attention_heads * hd * d
    attention += config.use_qkv_bias * (config.num_attention_heads + 2 * config.num_key_value_heads) * hd
    attention += config.use_bias * d  # the output projection `dense`
    norms = 2 * d
    swiglu = lambda width: 3 * d * width  # gate, up, down
    total = active = 0
    for layer in range(config.num_hidden_layers):
        total += attention + norms
        active += attention + norms
        if config.is_moe_layer(layer):
            router = config.num_experts * d
            shared = swiglu(config.shared_intermediate_size) if config.num_shared_experts else 0
            total += router + shared + config.num_experts * swiglu(config.moe_intermediate_size)
            active += router + shared + config.num_experts_per_tok * swiglu(config.moe_intermediate_size)
        else:
            total += swiglu(config.intermediate_size)
            active += swiglu(config.intermediate_size)
    embeddings = config.vocab_size * d
    head = 0 if config.tie_word_embeddings else config.vocab_size * d
    total += embeddings + head + d
    active += embeddings + head + d
    return total, active


def resolve_model_config(spec: str | Path, overrides: list[str] = ()) -> BailingMoeConfig:
    """A config from a preset name, a TOML file's `[model]` table, or a checkpoint directory,
    with `--set key=value` overrides (keys without the `model.` prefix)."""
    from lingcoder.config import apply_overrides, load_toml

    path = Path(spec)
    if path.is_dir():
        base, table = BailingMoeConfig.load(path), {}
    elif path.suffix == ".toml" or path.is_file():
        base, table = None, load_toml(path).get("model", {})
    else:
        base, table = BailingMoeConfig.preset(str(spec)), {}
    return model_config_from_table(apply_overrides(table, list(overrides)), base)


def model_config_from_table(table: dict[str, Any], base: BailingMoeConfig | None = None) -> BailingMoeConfig:
    """A `[model]` table: a `preset` (default `tiny`; ignored when `base` is given), any field of it
    overridden, and `dense = true` for the dense twin. Unknown keys and wrong types name the key."""
    from lingcoder.config import from_dict

    table = dict(table)
    preset = str(table.pop("preset", "tiny"))
    base = base or BailingMoeConfig.preset(preset)
    dense = table.pop("dense", False)
    if not isinstance(dense, bool):
        raise LingcoderError(f"model.dense: expected bool, got {dense!r}")
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    config = from_dict(BailingMoeConfig, {**values, **table}, where="model")
    return config.dense() if dense else config
