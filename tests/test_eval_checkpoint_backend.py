"""Our own checkpoints as a generation backend (needs lingcoder.model and lingcoder.serve).

Bookkeeping only: a tiny random model writes nonsense, so this checks that every task gets its
samples and every sample its verdict, not that anything passes.
"""

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lingcoder.evaluate.execution import VERDICTS
from lingcoder.evaluate.runner import run_eval

lingcoder_model = pytest.importorskip("lingcoder.model")
pytest.importorskip("lingcoder.serve.generate")

TASKS = ["HumanEval/0", "HumanEval/1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-checkpoint")
    config = lingcoder_model.BailingMoeConfig.preset("tiny")
    lingcoder_model.BailingMoeForCausalLM(config).save_pretrained(directory)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(config.vocab_size, 512),
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(
        ["def f(x):\n    return x + 1\n", "import math\nprint('hello')\n"] * 20, trainer
    )
    assert tokenizer.get_vocab_size() <= config.vocab_size
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


@pytest.mark.parametrize("mode", ["base", "instruct"])
def test_checkpoint_backend_bookkeeping(tmp_path, checkpoint, mode):
    out = tmp_path / "out"
    summary = run_eval(
        out,
        backend="checkpoint",
        model=str(checkpoint),
        tasks=TASKS,
        mode=mode,
        max_tokens=8,
        k=[1],
        progress=False,
    )
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == TASKS
    assert all(isinstance(s["completion"], str) and s["mode"] == mode for s in samples)
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in results] == TASKS
    assert all(r["verdict"] in VERDICTS for r in results)
    assert summary["n_samples"] == 2 and summary["per_language"]["python"]["samples"] == 2
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] is not None
