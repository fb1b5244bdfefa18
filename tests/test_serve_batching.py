"""The engine's decode-speed paths keep its output equal to `generate_ids` alone: the slot KV cache (rows
joining, leaving, shifting, storage growing) and the packed bf16 CPU weights."""

import copy
import threading

import pytest
import torch

from lingcoder.data.tokenizer import train_tokenizer
from lingcoder.generation.generate import generate_ids
from lingcoder.generation.sampling import SamplingParams
from lingcoder.model import BailingMoeForCausalLM
from lingcoder.serve.batch_cache import INITIAL_COLUMNS
from lingcoder.serve.engine import Engine, GenerationRequest
from lingcoder.serve.packed import PackedExperts, PackedLinear, PackedMLP, pack_for_serving, packing_applies

from .conftest import embedded_text, micro_config


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(embedded_text()[:4], vocab_size=400)


def micro_model(tokenizer, dtype=torch.float32):
    torch.manual_seed(0)
    config = micro_config(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=1024)
    return BailingMoeForCausalLM(config).to(dtype).eval()


def serve_all(engine: Engine, requests: dict[str, tuple[list[int], int]], first: str) -> dict[str, str]:
    """Each request's text; `first` runs alone until it has decoded a token, then the others join it."""
    texts = {name: "" for name in requests}
    finished = {name: threading.Event() for name in requests}
    started = threading.Event()

    def submit(name):
        def on_update(update):
            assert update.error is None, update.error
            texts[name] += update.text
            started.set()
            if update.finish_reason:
                finished[name].set()

        prompt, max_new = requests[name]
        engine.submit(GenerationRequest(prompt, SamplingParams(max_new), on_update))

    engine.start()
    try:
        submit(first)
        assert started.wait(60)
        for name in requests:
            if name != first:
                submit(name)
        assert all(event.wait(120) for event in finished.values())
    finally:
        engine.stop()
    return texts


def test_rows_joining_leaving_and_outgrowing_the_cache_decode_as_if_alone(tokenizer):
    model = micro_model(tokenizer)
    long_run = INITIAL_COLUMNS + 40  # past the preallocated columns: the rows shift left, storage grows
    requests = {"long": ([5, 6, 7], long_run), "long prompt": (list(range(10, 210)), 30)}
    requests |= {f"short {i}": ([20 + i, 30 + i], 5 + 3 * i) for i in range(10)}  # more rows than first slots
    engine = Engine(model, tokenizer, max_batch_size=12)
    texts = serve_all(engine, requests, first="long")
    for name, (prompt, max_new) in requests.items():
        ids = generate_ids(model, [prompt], SamplingParams(max_new), eos_token_id=model.config.eos_token_id)[0]
        if name == "long":
            assert len(ids) == long_run  # no early EOS: the long row really crossed the cache's end
        assert texts[name] == tokenizer.decode(ids, skip_special_tokens=False), name
    assert engine.stats.max_rows_in_step >= 10


@pytest.mark.skipif(not packing_applies(torch.nn.Linear(2, 2).to(torch.bfloat16)),
                    reason="this CPU's oneDNN has no bf16 GEMMs, so serving leaves bf16 weights unpacked")
def test_packed_bf16_weights_give_the_same_logits_and_tokens(tokenizer):
    model = micro_model(tokenizer, torch.bfloat16)
    packed = pack_for_serving(copy.deepcopy(model))
    assert not any(type(m) is torch.nn.Linear for m in packed.modules())
    assert any(isinstance(m, PackedLinear) for m in packed.modules())
    assert any(isinstance(m, PackedExperts) for m in packed.modules())
    assert any(isinstance(m, PackedMLP) for m in packed.modules())
    ids = torch.randint(1, tokenizer.get_vocab_size(), (3, 17))
    with torch.inference_mode():
        assert torch.equal(packed(ids).logits, model(ids).logits)
    prompts = [[5, 6, 7], list(range(10, 40)), [8]]
    params = SamplingParams(24)
    expected = generate_ids(model, prompts, params, eos_token_id=model.config.eos_token_id)
    assert generate_ids(packed, prompts, params, eos_token_id=model.config.eos_token_id) == expected
    requests = {str(i): (prompt, 24) for i, prompt in enumerate(prompts)}
    texts = serve_all(Engine(packed, tokenizer, max_batch_size=4), requests, first="0")
    assert [texts[str(i)] for i in range(3)] == [tokenizer.decode(e, skip_special_tokens=False) for e in expected]


def test_fp32_models_are_left_as_they_are(tokenizer):
    model = micro_model(tokenizer)
    assert not packing_applies(model)
    assert pack_for_serving(model) is model and any(type(m) is torch.nn.Linear for m in model.modules())
