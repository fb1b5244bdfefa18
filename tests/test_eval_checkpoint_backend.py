"""Our own checkpoints as a generation backend (`lingcoder.generation.generate`).

Bookkeeping only: a tiny random model writes nonsense, so this checks that every task gets its
samples and every sample its verdict, not that anything passes.
"""

import json

import pytest

from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer
from lingcoder.evaluate.execution import VERDICTS
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.model import BailingMoeConfig, BailingMoeForCausalLM

TASKS = ["HumanEval/0", "HumanEval/1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-checkpoint")
    tokenizer = train_tokenizer(["def f(x):\n    return x + 1\n", "import math\nprint('hello')\n"] * 20, 512)
    config = BailingMoeConfig.preset("tiny", vocab_size=tokenizer.get_vocab_size())
    BailingMoeForCausalLM(config).save_pretrained(directory)
    save_tokenizer(tokenizer, directory, model_max_length=config.max_position_embeddings)
    return directory


@pytest.mark.parametrize("mode", ["base", "instruct"])
def test_checkpoint_backend_bookkeeping(tmp_path, checkpoint, mode):
    out = tmp_path / "out"
    summary = run_eval(EvalConfig(
        out,
        backend="checkpoint",
        model=str(checkpoint),
        tasks=TASKS,
        mode=mode,
        max_tokens=8,
        k=[1],
        progress=False,
    ))
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == TASKS
    assert all(isinstance(s["completion"], str) and s["mode"] == mode for s in samples)
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in results] == TASKS
    assert all(r["verdict"] in VERDICTS for r in results)
    assert summary["n_samples"] == 2 and summary["per_language"]["python"]["samples"] == 2
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] is not None
