"""`lingcoder.vllm_server` without vLLM: which interpreter runs it, and clear errors when none can."""

import subprocess
import sys

import pytest

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.vllm_server import PYTHON_ENV, VLLMServer, find_vllm_python


def lingcoder(*args, env):
    return subprocess.run([sys.executable, "-m", "lingcoder", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_python_without_vllm_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(PYTHON_ENV, sys.executable if subprocess.run(
        [sys.executable, "-c", "import vllm"], capture_output=True).returncode else "/bin/false")
    with pytest.raises(LingcoderError, match="cannot import vllm.*make vllm-env"):
        find_vllm_python()
    with pytest.raises(LingcoderError, match="/no/such/python: this python cannot import vllm"):
        find_vllm_python("/no/such/python")


def test_server_and_backends_refuse_what_vllm_cannot_serve(tmp_path, micro_model, monkeypatch):
    with pytest.raises(LingcoderError, match="not a checkpoint directory"):
        VLLMServer(tmp_path)
    micro_model.save_pretrained(tmp_path / "no-tokenizer")
    with pytest.raises(LingcoderError, match="no tokenizer.json"):
        VLLMServer(tmp_path / "no-tokenizer")
    with pytest.raises(LingcoderError, match="checkpoint directory not found"):
        run_eval(EvalConfig(str(tmp_path / "out"), backend="vllm", model=str(tmp_path / "absent"),
                            tasks=["HumanEval/0"], progress=False))


def test_cli_without_vllm_says_how_to_get_it(tmp_path, micro_model):
    from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer

    micro_model.save_pretrained(tmp_path / "ckpt")
    save_tokenizer(train_tokenizer(["def f(): pass\n"] * 5, 300), tmp_path / "ckpt")
    env = {"PATH": "/usr/bin:/bin", PYTHON_ENV: "/bin/false", "PYTHONPATH": ":".join(sys.path)}
    served = lingcoder("serve", str(tmp_path / "ckpt"), "--engine", "vllm", env=env)
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert "cannot import vllm" in served.stderr and "make vllm-env" in served.stderr
    evaluated = lingcoder("eval", "--out", str(tmp_path / "out"), "--backend", "vllm", "--model",
                          str(tmp_path / "ckpt"), "--task", "HumanEval/0", "--no-progress", env=env)
    assert evaluated.returncode == 2 and "cannot import vllm" in evaluated.stderr, evaluated.stderr
    unknown = lingcoder("serve", str(tmp_path / "ckpt"), "--engine", "tgi", env=env)
    assert unknown.returncode == 2 and "engine 'tgi': unknown (known: lingcoder, vllm)" in unknown.stderr
