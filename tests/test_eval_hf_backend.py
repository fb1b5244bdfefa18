"""The transformers backend's plumbing, with a stand-in `transformers` module (nothing downloaded)."""

import types

import torch

from lingcoder.evaluate.backends import HuggingFaceBackend
from lingcoder.generation.sampling import SamplingParams

ALPHABET = "\n abcdefghijklmnopqrstuvwxyz0123456789():=+-_<>/"
ANSWER = "    return 1\ndef later():\n"


def encode(text):
    return [ALPHABET.index(c) for c in text.lower() if c in ALPHABET]


class FakeTokenizer:
    eos_token_id, pad_token_id = 0, None

    def __call__(self, text, return_tensors):
        ids = torch.tensor([encode(text)])
        return types.SimpleNamespace(to=lambda device: {"input_ids": ids})

    def batch_decode(self, rows, skip_special_tokens):
        return ["".join(ALPHABET[int(t)] for t in row) for row in rows]

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "chat: " + messages[-1]["content"]


class FakeModel:
    calls: list = []

    def to(self, device):
        return self

    def eval(self):
        return self

    def generate(self, input_ids, max_new_tokens, num_return_sequences, pad_token_id, **sampling):
        FakeModel.calls.append(
            {"prompt": input_ids, "max_new_tokens": max_new_tokens, "n": num_return_sequences, **sampling}
        )
        new = torch.tensor([encode(ANSWER)] * num_return_sequences)
        return torch.cat([input_ids.repeat(num_return_sequences, 1), new], dim=1)


def install_fake_transformers(monkeypatch):
    fake = types.SimpleNamespace(
        AutoTokenizer=types.SimpleNamespace(from_pretrained=lambda name: FakeTokenizer()),
        AutoModelForCausalLM=types.SimpleNamespace(from_pretrained=lambda name: FakeModel()),
    )
    monkeypatch.setitem(__import__("sys").modules, "transformers", fake)
    FakeModel.calls = []


def test_complete_sampling_and_greedy(monkeypatch):
    install_fake_transformers(monkeypatch)
    backend = HuggingFaceBackend("some/model")
    sampled = backend.complete(
        ["def f():\n"], SamplingParams(n=2, temperature=0.7, top_p=0.9, stop=("\ndef",))
    )
    assert sampled == [["    return 1", "    return 1"]]
    assert FakeModel.calls[-1] | {"prompt": None} == {
        "prompt": None,
        "max_new_tokens": 512,
        "n": 2,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    backend.complete(["x"], SamplingParams(max_tokens=7))
    assert FakeModel.calls[-1]["do_sample"] is False and FakeModel.calls[-1]["max_new_tokens"] == 7


def test_chat_uses_the_tokenizer_template(monkeypatch):
    install_fake_transformers(monkeypatch)
    backend = HuggingFaceBackend("some/model")
    (answers,) = backend.chat([[{"role": "user", "content": "hi"}]], SamplingParams())
    assert answers == [ANSWER]
    assert FakeModel.calls[-1]["prompt"].tolist() == [encode("chat: hi")]
