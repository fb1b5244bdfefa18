"""DPO: the loss and its gradients against a hand computation, answer-only log-probs, the margin rising,
stored reference log-probs equal to on-the-fly ones (and checked on reuse), and sft -> dpo on the CLI."""

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from lingcoder.errors import LingcoderError
from lingcoder.generation.chat_template import ChatTemplate
from lingcoder.generation.generate import load_for_generation
from lingcoder.model import BailingMoeForCausalLM
from lingcoder.runfiles import complete_checkpoints, read_metrics
from lingcoder.train.chat import ChatRenderer, preference_pair
from lingcoder.train.dpo import DPOObjective, dpo, dpo_loss, load_dpo_config, sequence_logprobs
from lingcoder.train.packing import packed_batch
from lingcoder.train.records import read_examples

from .posttrain_data import dpo_records, lingcoder, make_checkpoint, sft_records, write_config, write_jsonl


@pytest.fixture(scope="module")
def checkpoint(tokenizer_dir, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("dpo") / "base", tokenizer_dir)


def dpo_table(out, checkpoint, data, **overrides) -> dict:
    return {"data": [str(p) for p in data], "init_from": str(checkpoint), "out": str(out), "seq_len": 128,
            "micro_batch_size": 2, "epochs": 2, "beta": 0.5, "eval_every": 3, "checkpoint_every": 3,
            "val_fraction": 0.1, "schedule": {"kind": "constant", "lr_start": 3e-3}, **overrides}


def test_dpo_loss_and_gradients_equal_a_hand_computation():
    beta = 0.3
    policy_chosen = torch.tensor([-4.0, -7.5], requires_grad=True)
    policy_rejected = torch.tensor([-5.0, -6.0], requires_grad=True)
    ref_chosen, ref_rejected = torch.tensor([-4.5, -7.0]), torch.tensor([-4.0, -6.5])
    losses, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses.sum().backward()
    for i, (pc, pr, rc, rr) in enumerate([(-4.0, -5.0, -4.5, -4.0), (-7.5, -6.0, -7.0, -6.5)]):
        z = beta * ((pc - rc) - (pr - rr))
        assert losses[i].item() == pytest.approx(math.log(1 + math.exp(-z)), rel=1e-6)
        assert chosen[i].item() == pytest.approx(beta * (pc - rc)) and rejected[i].item() == pytest.approx(
            beta * (pr - rr))
        d_z = -1 / (1 + math.exp(z))  # d/dz of log(1 + e^-z)
        assert policy_chosen.grad[i].item() == pytest.approx(beta * d_z, rel=1e-6)
        assert policy_rejected.grad[i].item() == pytest.approx(-beta * d_z, rel=1e-6)


def test_a_step_on_the_tiny_model_sums_answer_tokens_only(checkpoint, tmp_path):
    renderer = ChatRenderer.from_checkpoint(checkpoint)
    records = dpo_records(3)
    examples = read_examples([str(write_jsonl(tmp_path / "d.jsonl", records))], lambda r: list(preference_pair(r)),
                             renderer, 193, "fail", "dpo").examples
    batch = packed_batch(examples, [[2, 0], [1]], 193, pad_id=0)
    assert batch.examples == [2, 0, 1]
    model = BailingMoeForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    fake_reference = torch.tensor([-30.0, -31.0, -20.0, -22.5, -25.0, -24.0])
    objective = DPOObjective(beta=0.2, reference=lambda b: fake_reference)
    loss, shares, _ = objective.loss(model, batch, scale=1 / 3)

    def by_hand(prompt, answer):
        """The answer's tokens follow the inference prompt; sum their log-probs, end-of-turn token included."""
        text = ChatTemplate.from_model_dir(checkpoint).render([{"role": "user", "content": prompt}])
        prompt_ids = renderer.tokenizer.encode(text).ids
        answer_ids = renderer.tokenizer.encode(answer + "<|endoftext|>").ids
        ids = torch.tensor([prompt_ids + answer_ids])
        logp = F.log_softmax(model(ids[:, :-1]).logits[0].float(), dim=-1)
        return sum(logp[t - 1, ids[0, t]] for t in range(len(prompt_ids), ids.shape[1]))

    policy = torch.stack([by_hand(records[i]["prompt"], records[i][side]) for i in (2, 0, 1)
                          for side in ("chosen", "rejected")])
    torch.testing.assert_close(sequence_logprobs(model(batch.input_ids, position_ids=batch.position_ids,
                                                       document_ids=batch.document_ids).logits, batch), policy)
    z = 0.2 * ((policy[0::2] - fake_reference[0::2]) - (policy[1::2] - fake_reference[1::2]))
    expected = -F.logsigmoid(z).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert shares["reward_accuracy"] == pytest.approx((z > 0).float().mean().item())
    assert shares["margin"] == pytest.approx(z.mean().item(), rel=1e-5)

    loss.backward()  # the gradient reaching the policy equals that of the hand-built loss
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    expected.backward()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, model.get_parameter(name).grad, rtol=1e-4, atol=1e-6)


def test_steps_raise_the_margin_and_stored_reference_equals_on_the_fly(checkpoint, tmp_path):
    lines = [*dpo_records(12), {"mid": "same", "prompt": "p", "chosen": "a", "rejected": "a"},
             {"mid": "half", "prompt": "p", "chosen": "a"}]
    data = write_jsonl(tmp_path / "dpo.jsonl", lines)
    quiet = Console(file=io.StringIO())
    config_path = write_config(tmp_path / "c.toml", dpo=dpo_table(tmp_path / "fly", checkpoint, [data],
                                                                  reference="on_the_fly"))
    fly = dpo(load_dpo_config(config_path), console=quiet)
    assert fly.data["bad_by_kind"] == {"chosen equals rejected": 1, "no rejected": 1} and fly.data["used"] == 12
    train = [r for r in read_metrics(fly.out / "metrics.jsonl") if r["kind"] == "train"]
    assert train[0]["margin"] == pytest.approx(0, abs=1e-5)  # the policy starts as the reference
    assert train[0]["dpo_loss"] == pytest.approx(math.log(2))
    assert train[-1]["margin"] > 0.5 and train[-1]["reward_accuracy"] == 1.0
    assert train[-1]["dpo_loss"] < 0.5 * math.log(2)
    for key in ("chosen_reward", "rejected_reward", "lr", "grad_norm", "aux_loss", "tokens", "epoch"):
        assert key in train[-1], key
    assert fly.metrics["val"]["val_margin"] > 0 and fly.metrics["val"]["val_pairs"] >= 1

    stored = dpo(load_dpo_config(config_path, [f'dpo.out="{tmp_path / "stored"}"', 'dpo.reference="precomputed"']),
                 console=quiet)
    assert stored.steps == fly.steps
    assert stored.losses == pytest.approx(fly.losses, rel=1e-5, abs=1e-6)
    table = json.loads((stored.out / "reference_logprobs.json").read_text())
    assert len(table["logprobs"]) == 12 and all(v[0] < 0 and v[1] < 0 for v in table["logprobs"].values())

    resumed_dir = tmp_path / "stored"
    shutil.rmtree(complete_checkpoints(resumed_dir / "checkpoints")[-1])  # as if killed before the last one
    log = io.StringIO()
    resumed = dpo(load_dpo_config(config_path, [f'dpo.out="{resumed_dir}"', 'dpo.reference="precomputed"']),
                  resume=True, console=Console(file=log, width=200))
    assert "12 of 12 pairs from" in log.getvalue() and resumed.losses == stored.losses
    table["logprobs"] = {k: [v[0] + 1.0, v[1]] for k, v in table["logprobs"].items()}
    (resumed_dir / "reference_logprobs.json").write_text(json.dumps(table))
    with pytest.raises(LingcoderError, match="stored reference log-probs differ"):
        dpo(load_dpo_config(config_path, [f'dpo.out="{resumed_dir}"', 'dpo.reference="precomputed"']), resume=True,
            console=quiet)


def test_sft_then_dpo_on_the_cli(checkpoint, tmp_path):
    sft_data = write_jsonl(tmp_path / "sft.jsonl", sft_records(12))
    dpo_data = write_jsonl(tmp_path / "dpo.jsonl", dpo_records(8))
    config = write_config(tmp_path / "c.toml", sft={
        "data": [str(sft_data)], "init_from": str(checkpoint), "out": str(tmp_path / "sft"), "seq_len": 64,
        "micro_batch_size": 4, "epochs": 1, "schedule": {"kind": "constant", "lr_start": 1e-3}},
        dpo=dpo_table(tmp_path / "dpo", tmp_path / "sft", [dpo_data], epochs=1))
    first = lingcoder("sft", config)
    assert first.returncode == 0, first.stderr
    second = lingcoder("dpo", config, "--set", "dpo.beta=0.2")
    assert second.returncode == 0, second.stderr
    final = complete_checkpoints(tmp_path / "dpo" / "checkpoints")[-1]
    model, tokenizer = load_for_generation(final)
    assert model.num_parameters() > 0 and tokenizer.token_to_id("<role>") is not None
    assert str(complete_checkpoints(tmp_path / "sft" / "checkpoints")[-1].resolve()) == json.loads(
        (tmp_path / "dpo" / "reference_logprobs.json").read_text())["reference"]
    bad = lingcoder("dpo", config, "--set", 'dpo.reference="maybe"')
    assert bad.returncode == 2 and "dpo.reference: expected one of" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_fsdp2_processes_match_one_process(checkpoint, tmp_path):
    """sft then dpo (reference sharded too, log-probs gathered) under torchrun with the same global batch, with
    FSDP2 alone and with the experts split over the two processes (expert_parallel = 2)."""
    sft_data = write_jsonl(tmp_path / "sft.jsonl", sft_records(20))
    dpo_data = write_jsonl(tmp_path / "dpo.jsonl", dpo_records(12))
    losses = {}
    for name, micro_batch_size, ep in (("one", 4, 1), ("two", 2, 1), ("ep", 2, 2)):
        out = tmp_path / name
        config = write_config(tmp_path / f"{name}.toml", sft={
            "data": [str(sft_data)], "init_from": str(checkpoint), "out": str(out / "sft"), "seq_len": 64,
            "micro_batch_size": micro_batch_size, "epochs": 1, "schedule": {"kind": "constant", "lr_start": 1e-3},
            "expert_parallel": ep},
            dpo=dpo_table(out / "dpo", out / "sft", [dpo_data], micro_batch_size=micro_batch_size, epochs=1,
                          expert_parallel=ep))
        launcher = [] if name == "one" else [Path(sys.executable).with_name("torchrun"), "--standalone",
                                             "--nproc_per_node", "2", "-m", "lingcoder"]
        for stage in ("sft", "dpo"):
            command = [*launcher, stage, config] if launcher else None
            result = lingcoder(stage, config) if command is None else subprocess.run(
                list(map(str, command)), capture_output=True, text=True, timeout=600,
                env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert result.returncode == 0, result.stderr[-3000:]
            losses[name, stage] = [r for r in read_metrics(out / stage / "metrics.jsonl")]
    for stage, key in (("sft", "lm_loss"), ("dpo", "dpo_loss")):
        one = losses["one", stage]
        for two in (losses["two", stage], losses["ep", stage]):
            assert [r["step"] for r in one] == [r["step"] for r in two] and len(one) > 2
            for a, b in zip(one, two, strict=True):
                assert b.get(key, b.get("val_loss")) == pytest.approx(a.get(key, a.get("val_loss")), rel=2e-3,
                                                                      abs=2e-3)
