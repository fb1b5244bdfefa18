"""The `bailing_moe` config class for `transformers`, copied into every checkpoint lingcoder writes.

`config.json` names it in `auto_map`, so `AutoConfig.from_pretrained(dir, trust_remote_code=True)` and
vLLM (whose own `bailing_moe` model reads this config) load our checkpoints unchanged. The file stands
alone: it imports only `transformers`, never lingcoder. Its fields are those of the released Ling
configs, plus the router options of Ling 2.0 / DeepSeek-V3 (`score_function`,
`moe_router_enable_expert_bias`, `routed_scaling_factor`, `n_group`, `topk_group`).
"""

from transformers import PretrainedConfig


class BailingMoeConfig(PretrainedConfig):
    model_type = "bailing_moe"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=126464,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=None,
        hidden_act="silu",
        use_qkv_bias=False,
        use_bias=False,
        rms_norm_eps=1e-6,
        norm_head=True,
        tie_word_embeddings=False,
        embedding_dropout=0.0,
        attention_dropout=0.0,
        output_dropout=0.0,
        initializer_range=0.006,
        max_position_embeddings=16384,
        rope_theta=600000.0,
        rope_scaling=None,
        use_cache=True,
        use_sliding_window=False,
        sliding_window=4096,
        max_window_layers=28,
        pad_token_id=126081,
        eos_token_id=126081,
        bos_token_id=None,
        num_experts=64,
        num_shared_experts=2,
        num_experts_per_tok=6,
        norm_topk_prob=True,
        moe_intermediate_size=1408,
        first_k_dense_replace=0,
        score_function="softmax",
        moe_router_enable_expert_bias=False,
        routed_scaling_factor=1.0,
        n_group=None,
        topk_group=None,
        output_router_logits=False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        self.hidden_act = hidden_act
        self.use_qkv_bias = use_qkv_bias
        self.use_bias = use_bias
        self.rms_norm_eps = rms_norm_eps
        self.norm_head = norm_head
        self.embedding_dropout = embedding_dropout
        self.attention_dropout = attention_dropout
        self.output_dropout = output_dropout
        self.initializer_range = initializer_range
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.use_cache = use_cache
        self.use_sliding_window = use_sliding_window
        self.sliding_window = sliding_window
        self.max_window_layers = max_window_layers
        self.num_experts = num_experts
        self.num_shared_experts = num_shared_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.norm_topk_prob = norm_topk_prob
        self.moe_intermediate_size = moe_intermediate_size
        self.first_k_dense_replace = first_k_dense_replace
        self.score_function = score_function
        self.moe_router_enable_expert_bias = moe_router_enable_expert_bias
        self.routed_scaling_factor = routed_scaling_factor
        self.n_group = n_group
        self.topk_group = topk_group
        self.output_router_logits = output_router_logits
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
