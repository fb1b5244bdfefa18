"""What the GPU paths need, against the eager path on CPU: the static-shape decode step against the eager
KV-cache forward (captured whole by torch.compile without recompiling per token), activation checkpointing
against plain backward, and bf16 autocast over fp32 master weights with an fp32 router."""

import torch

from lingcoder.model import BailingMoeForCausalLM
from lingcoder.model.attention import KVCache
from lingcoder.model.static_decode import StaticDecodeStep, greedy_decode

from .conftest import micro_config


def micro_model(seed=0, **overrides) -> BailingMoeForCausalLM:
    torch.manual_seed(seed)
    model = BailingMoeForCausalLM(micro_config(**overrides)).eval()
    model.init_weights(seed=seed)
    return model


@torch.no_grad()
def eager_greedy(model, prompt, steps):
    cache = KVCache(model.config, prompt.shape[0], prompt.shape[1] + steps, prompt.device, torch.float32)
    logits = model(prompt, cache=cache).logits[:, -1]
    out, all_logits = [], []
    for _ in range(steps):
        out.append(logits.argmax(-1))
        logits = model(out[-1][:, None], cache=cache).logits[:, -1]
        all_logits.append(logits)
    return torch.stack(out, 1), all_logits


def test_static_step_matches_the_eager_cache_forward():
    model = micro_model()
    prompt = torch.randint(0, 97, (2, 5))
    want_ids, want_logits = eager_greedy(model, prompt, 6)
    cache = KVCache(model.config, 2, 11, "cpu", torch.float32)
    logits = model(prompt, cache=cache).logits[:, -1]
    step = StaticDecodeStep(model, cache)
    valid = torch.ones(2, 11, dtype=torch.bool)
    for i in range(6):
        token = logits.argmax(-1)
        assert token.tolist() == want_ids[:, i].tolist()
        slot = torch.tensor(5 + i)
        logits = step(token[:, None], slot.expand(2, 1), slot, valid)
        torch.testing.assert_close(logits, want_logits[i], atol=1e-5, rtol=1e-5)


def test_left_padding_is_masked_out():
    model = micro_model(seed=1)
    prompt = torch.randint(1, 97, (1, 4))
    want, _ = eager_greedy(model, prompt, 3)
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), prompt], dim=1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    cache = KVCache(model.config, 1, 9, "cpu", torch.float32)
    with torch.no_grad():
        logits = model(padded, attention_mask=mask, cache=cache).logits[:, -1]
    step = StaticDecodeStep(model, cache)
    valid = torch.ones(1, 9, dtype=torch.bool)
    valid[0, :2] = False
    got = []
    for i in range(3):
        got.append(int(logits.argmax(-1)))
        logits = step(torch.tensor([[got[-1]]]), torch.tensor([[4 + i]]), torch.tensor(6 + i), valid)
    assert got == want[0].tolist()


def test_compiled_step_is_one_graph_for_every_token():
    torch._dynamo.reset()
    model = micro_model(seed=2)
    prompt = torch.randint(0, 97, (6, 4))  # more sequences than the eager forward gathers experts for
    want, _ = eager_greedy(model, prompt, 5)
    torch._dynamo.utils.counters.clear()
    got = greedy_decode(model, prompt, 5, compile=True, backend="aot_eager")  # fullgraph: a break would raise
    assert got.tolist() == want.tolist()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    model = micro_model(seed=3).train()
    ids = torch.randint(0, 97, (2, 16))
    results = []
    for recompute in (False, True):
        model.model.activation_checkpointing = recompute
        out = model(ids, labels=ids)
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        model.zero_grad(set_to_none=True)
    torch.testing.assert_close(results[1][0], results[0][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, msg=name)


def test_bf16_autocast_keeps_fp32_master_weights_gradients_and_router():
    model = micro_model(seed=4).train()
    ids = torch.randint(0, 97, (2, 16))
    fp32 = model(ids, labels=ids)
    fp32.loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    logits = []
    hook = model.model.layers[0].mlp.gate.register_forward_hook(lambda m, i, out: logits.append(out.logits_TE))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(ids, labels=ids)
    hook.remove()
    bf16.loss.backward()
    assert logits[0].dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(bf16.loss, fp32.loss, atol=3e-2, rtol=1e-2)
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([p.grad.flatten() for p in model.parameters()]), torch.cat([g.flatten() for g in want.values()]),
        dim=0)
    assert cosine > 0.99
