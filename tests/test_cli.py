"""The command line, run as users run it: `lingcoder ...` in a subprocess."""

import subprocess
import sys

from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer
from lingcoder.model import BailingMoeForCausalLM

from .conftest import micro_config


def lingcoder(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "lingcoder", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_model_info_prints_the_papers_counts_computed_from_the_config():
    out = lingcoder("model", "info", "ling-coder-lite").stdout
    assert "16.80B" in out and "2.75B" in out
    assert "64 + 2, top-6" in out


def test_model_info_reads_toml_configs_and_checkpoints_and_overrides(tmp_path):
    BailingMoeForCausalLM(micro_config()).save_pretrained(tmp_path / "ckpt")
    assert "8 + 1, top-2" in lingcoder("model", "info", str(tmp_path / "ckpt")).stdout
    assert "16 + 1, top-2" in lingcoder("model", "info", "configs/tiny.toml").stdout
    assert "4 + 1, top-2" in lingcoder("model", "info", "tiny", "--set", "num_experts=4").stdout
    dense = lingcoder("model", "info", "tiny", "--dense").stdout
    assert "(0 MoE)" in dense


def test_bad_input_is_one_clear_line_without_traceback(tmp_path):
    for args, message in [
        (("model", "info", "tiny", "--set", "num_experts=many"), "model.num_experts: expected int"),
        (("model", "info", "no-such-preset"), "unknown model preset 'no-such-preset'"),
        (("generate", "--model", str(tmp_path), "--prompt", "x"), "no tokenizer.json"),
        (("model", "info", "tiny", "--set", "rope_scaling=[1]"), "model.rope_scaling: expected dict, got [1]"),
    ]:
        result = lingcoder(*args, check=False)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr


def test_generate_command_from_a_checkpoint(tmp_path):
    tokenizer = train_tokenizer(["def f(x):\n    return x\n"] * 10, vocab_size=300)
    model = BailingMoeForCausalLM(micro_config(vocab_size=tokenizer.get_vocab_size()))
    model.save_pretrained(tmp_path / "ckpt")
    save_tokenizer(tokenizer, tmp_path / "ckpt", model_max_length=model.config.max_position_embeddings)
    out = lingcoder("generate", "--model", str(tmp_path / "ckpt"), "--prompt", "def f", "--prompt", "ret",
                    "--max-new-tokens", "5", "--temperature", "0.7", "--seed", "1").stdout
    assert out.startswith("def f") and "\nret" in out


