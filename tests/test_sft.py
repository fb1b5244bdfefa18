"""SFT: the exact assistant mask, Ling and OpenAI records, packing that keeps conversations apart, the loss
falling, exact resume, bad records accounted for, and one-line CLI errors."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from lingcoder.errors import LingcoderError
from lingcoder.generation.chat_template import ChatTemplate
from lingcoder.generation.generate import generate, load_for_generation
from lingcoder.model import BailingMoeForCausalLM
from lingcoder.runfiles import read_metrics
from lingcoder.train.chat import ChatRenderer, conversation
from lingcoder.train.config import load_pretrain_config
from lingcoder.train.dpo import load_dpo_config
from lingcoder.train.packing import packed_batch
from lingcoder.train.records import read_examples
from lingcoder.train.sft import SFTObjective, load_sft_config, sft

from .posttrain_data import lingcoder, make_checkpoint, sft_records, write_config, write_jsonl

SYSTEM, Q1, A1, Q2, A2 = ("You write Python.", "Add two numbers.", "def add(a, b):\n    return a + b\n",
                          "Now subtract.", "def sub(a, b):\n    return a - b\n")
LING = [{"role": "SYSTEM", "content": SYSTEM}, {"role": "HUMAN", "content": Q1}, {"role": "ASSISTANT", "content": A1},
        {"role": "HUMAN", "content": Q2}, {"role": "ASSISTANT", "content": A2}]
OPENAI = [{"role": {"SYSTEM": "system", "HUMAN": "user", "ASSISTANT": "assistant"}[m["role"]], "content": m["content"]}
          for m in LING]



@pytest.fixture(scope="module")
def checkpoint(tokenizer_dir, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("sft") / "base", tokenizer_dir)


def sft_table(tmp_path, checkpoint, data, **overrides) -> dict:
    return {"data": [str(p) for p in data], "init_from": str(checkpoint), "out": str(tmp_path / "out"),
            "seq_len": 64, "micro_batch_size": 2, "epochs": 2, "eval_every": 4, "checkpoint_every": 4,
            "val_fraction": 0.1, "schedule": {"kind": "cosine", "lr_start": 3e-3, "lr_end": 3e-4, "warmup_steps": 2},
            **overrides}


def hand_built(tokenizer, pieces):
    """Token ids and trained flags, each piece tokenized on its own: (text, trained)."""
    ids, trained = [], []
    for text, is_trained in pieces:
        piece = tokenizer.encode(text).ids
        ids += piece
        trained += [is_trained] * len(piece)
    return ids, trained


def test_assistant_mask_is_exact_on_a_multi_turn_conversation(checkpoint, tmp_path):
    renderer = ChatRenderer.from_checkpoint(checkpoint)
    header = lambda role: [("<role>", False), (role, False), ("</role>", False)]
    ids, trained = hand_built(renderer.tokenizer, [
        *header("SYSTEM"), (SYSTEM, False), *header("HUMAN"), (Q1, False),
        *header("ASSISTANT"), (A1, True), ("<|endoftext|>", True),
        *header("HUMAN"), (Q2, False), *header("ASSISTANT"), (A2, True), ("<|endoftext|>", True)])
    rendered = renderer.render(conversation({"messages": LING}))
    assert rendered.ids.tolist() == ids
    assert rendered.trained.tolist() == trained
    # the context of each answer is exactly the prompt inference builds (server, evaluation backends)
    for turns in (OPENAI[:3], OPENAI):
        prompt = renderer.tokenizer.encode(ChatTemplate.from_model_dir(checkpoint).render(turns[:-1])).ids
        assert ids[: len(prompt)] == prompt and trained[len(prompt)] and not trained[len(prompt) - 1]

    # through the public path: file -> example -> packed batch labels -> the SFT loss
    examples = read_examples([str(write_jsonl(tmp_path / "one.jsonl", [{"messages": LING}]))], lambda r: [
        conversation(r)], renderer, 129, "fail", "sft").examples
    batch = packed_batch(examples, [[0]], 129, pad_id=0)
    labels = batch.labels[0, : len(ids) - 1].tolist()
    assert labels == [ids[t + 1] if trained[t + 1] else -100 for t in range(len(ids) - 1)]
    assert (batch.labels[0, len(ids) - 1 :] == -100).all()
    model = BailingMoeForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    count = sum(trained)
    loss, _, _ = SFTObjective().loss(model, batch, scale=1 / count)
    logp = F.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].float(), dim=-1)
    by_hand = -sum(logp[t, ids[t + 1]] for t in range(len(ids) - 1) if trained[t + 1]) / count
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_ling_and_openai_records_give_identical_tokens(checkpoint, tmp_path):
    renderer = ChatRenderer.from_checkpoint(checkpoint)
    ling = write_jsonl(tmp_path / "ling.jsonl", [{"mid": "a", "messages": LING, "tags": [], "languages": []}])
    openai = write_jsonl(tmp_path / "openai.jsonl", [{"messages": OPENAI}])
    read = lambda path: read_examples([str(path)], lambda r: [conversation(r)], renderer, 1000, "fail", "sft")
    (a,), (b,) = read(ling).examples, read(openai).examples
    assert np.array_equal(a.sequences[0].ids, b.sequences[0].ids)
    assert np.array_equal(a.sequences[0].trained, b.sequences[0].trained)


def test_packed_conversations_compute_what_they_compute_alone(checkpoint, tmp_path):
    renderer = ChatRenderer.from_checkpoint(checkpoint)
    records = sft_records(3) + [{"messages": LING}]
    examples = read_examples([str(write_jsonl(tmp_path / "r.jsonl", records))], lambda r: [conversation(r)], renderer,
                             256, "fail", "sft").examples
    batch = packed_batch(examples, [[0, 3, 1]], 256, pad_id=0)
    assert batch.document_ids[0].unique().tolist() == [0, 1, 2, 3]  # three conversations + padding
    model = BailingMoeForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    with torch.no_grad():
        packed = model(batch.input_ids, position_ids=batch.position_ids, document_ids=batch.document_ids).logits[0]
        start = len(examples[0].sequences[0])
        for i in (3, 1):
            ids = examples[i].sequences[0].ids
            alone = model(torch.from_numpy(ids)[None]).logits[0]
            torch.testing.assert_close(packed[start : start + len(ids)], alone, atol=1e-5, rtol=1e-5)
            start += len(ids)


def test_sft_loss_falls_and_the_checkpoint_chats(checkpoint, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_records(24))
    config = load_sft_config(write_config(tmp_path / "c.toml", sft=sft_table(tmp_path, checkpoint, [data])))
    result = sft(config, console=Console(file=io.StringIO()))
    assert result.data["read"] == result.data["used"] == 24 and result.data["bad"] == 0
    assert result.data["train_examples"] + result.data["val_examples"] == 24 and result.data["val_examples"] > 0
    train = [r for r in read_metrics(result.out / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, result.steps + 1)) and train[-1]["epoch"] == 2.0
    assert sum(r["examples"] for r in train) == 2 * result.data["train_examples"]  # every example, every epoch
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3]) - 0.5
    val = [r for r in read_metrics(result.out / "metrics.jsonl") if r["kind"] == "val"]
    assert val[-1]["step"] == result.steps and val[-1]["val_loss"] < val[0]["val_loss"]
    assert result.checkpoint.name == f"step-{result.steps:08d}"
    assert json.loads((result.checkpoint / "tokenizer_config.json").read_text())["chat_template"]
    model, tokenizer = load_for_generation(result.checkpoint)
    prompt = ChatTemplate.from_model_dir(result.checkpoint).render([{"role": "user", "content": "Write a function "
                                                                                      "that returns 7."}])
    assert generate(model, tokenizer, [prompt], max_new_tokens=4)[0].startswith("def")


def test_resume_replays_the_uninterrupted_run(checkpoint, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_records(16))
    full = load_sft_config(write_config(tmp_path / "c.toml", sft={
        **sft_table(tmp_path, checkpoint, [data], checkpoint_every=2, keep_checkpoints=100), "grad_accum": 2}))
    quiet = Console(file=io.StringIO())
    expected = sft(full, console=quiet)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(expected.out, interrupted)
    for later in sorted((interrupted / "checkpoints").iterdir())[1:]:  # as if killed after step 2's checkpoint
        shutil.rmtree(later)
    lines = (interrupted / "metrics.jsonl").read_text().splitlines()
    (interrupted / "metrics.jsonl").write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= 2))
    resumed_config = load_sft_config(tmp_path / "c.toml", [f'sft.out="{interrupted}"'])
    resumed = sft(resumed_config, resume=True, console=quiet)
    assert expected.steps == resumed.steps > 3
    assert resumed.losses == expected.losses
    a = BailingMoeForCausalLM.from_pretrained(expected.checkpoint).state_dict()
    b = BailingMoeForCausalLM.from_pretrained(resumed.checkpoint).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(LingcoderError, match="cannot resume exactly"):
        sft(load_sft_config(tmp_path / "c.toml", [f'sft.out="{interrupted}"', "sft.seed=1"]), resume=True,
            console=quiet)
    with pytest.raises(LingcoderError, match="already holds checkpoints"):
        sft(resumed_config, console=quiet)


def test_bad_records_are_reported_with_their_line_and_counted(checkpoint, tmp_path):
    good = sft_records(6)
    lines = [*good[:3], "{not json", {"messages": [{"role": "robot", "content": "hi"}]},
             {"messages": [{"role": "HUMAN", "content": "hi"}]}, {"messages": []}, "",
             {"messages": [{"role": "HUMAN", "content": "x " * 200}, {"role": "ASSISTANT", "content": "y"}]},
             {"messages": [{"role": "HUMAN", "content": "hi"}, {"role": "ASSISTANT", "content": "a <role> b"}]},
             [1, 2], *good[3:]]
    data = write_jsonl(tmp_path / "mixed.jsonl", lines)
    config_path = write_config(tmp_path / "c.toml", sft=sft_table(tmp_path, checkpoint, [data], epochs=1))
    log = io.StringIO()
    result = sft(load_sft_config(config_path), console=Console(file=log, width=200))
    assert result.data["read"] == 14 and result.data["used"] == 6 and result.data["bad"] == 8
    expected = {4: "not JSON", 5: "unknown role", 6: "no assistant turn", 7: "no messages", 8: "empty line",
                9: "too long", 10: "special token in content", 11: "not an object"}
    assert result.data["bad_by_kind"] == {kind: 1 for kind in expected.values()}
    bad = [json.loads(line) for line in (result.out / "bad_records.jsonl").read_text().splitlines()]
    assert {b["where"]: b["kind"] for b in bad} == {f"{data}:{line}": kind for line, kind in expected.items()}
    assert f"{data}:4: not JSON" in log.getvalue() and "8 skipped" in log.getvalue()
    with pytest.raises(LingcoderError, match=f"{data}:4: not JSON"):
        sft(load_sft_config(config_path, ['sft.on_bad_record="fail"', f'sft.out="{tmp_path / "strict"}"']))


def test_bad_config_fails_before_training_and_the_cli_says_so_in_one_line(checkpoint, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_records(4))
    config = write_config(tmp_path / "c.toml", sft=sft_table(tmp_path, checkpoint, [data]))
    cases = [
        (['sft.data=["missing.jsonl"]'], "sft.data: missing.jsonl: file not found"),
        (["sft.data=[]"], "sft.data: no data files given"),
        (['sft.init_from="nowhere"'], "sft.init_from: nowhere is neither a checkpoint directory"),
        (["sft.seq_len=100000"], r"sft.seq_len 100000 must be in \[2, the model's max_position_embeddings 256\]"),
        (["sft.epochs=0"], "sft.epochs must be > 0"),
        (["sft.micro_batch_size=0"], "sft.micro_batch_size must be > 0"),
        (["sft.val_fraction=1.0"], "sft.val_fraction must be in"),
        (['sft.on_bad_record="ignore"'], "sft.on_bad_record: expected one of"),
    ]
    for overrides, message in cases:
        with pytest.raises(LingcoderError, match=message):
            sft(load_sft_config(config, overrides))
    with pytest.raises(LingcoderError, match="no complete checkpoint"):
        sft(load_sft_config(config), resume=True)
    with pytest.raises(LingcoderError, match=r"no \[sft\] table"):
        load_sft_config(write_config(tmp_path / "pretrain-only.toml"))
    result = lingcoder("sft", config, "--set", "sft.lr=1e-3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "sft.lr: unknown key" in result.stderr


def test_one_config_file_holds_every_stage():
    tiny = Path(__file__).parents[1] / "configs" / "tiny.toml"
    assert load_pretrain_config(tiny).train.out == "runs/tiny/pretrain"  # [sft] and [dpo] are not pretraining's
    sft_config, dpo_config = load_sft_config(tiny), load_dpo_config(tiny, ["dpo.beta=0.2"])
    assert sft_config.init_from == "runs/tiny/pretrain" and dpo_config.init_from == "runs/tiny/sft"
    assert sft_config.schedule.kind == "cosine" and dpo_config.reference == "precomputed" and dpo_config.beta == 0.2
