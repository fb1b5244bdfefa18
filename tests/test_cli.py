"""The command line, run as users run it: `lingcoder ...` in a subprocess."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from lingcoder.data.tokenizer import train_tokenizer
from lingcoder.demo import run_demo
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
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tokenizer)
    out = lingcoder("generate", "--model", str(tmp_path / "ckpt"), "--prompt", "def f", "--prompt", "ret",
                    "--max-new-tokens", "5", "--temperature", "0.7", "--seed", "1").stdout
    assert out.startswith("def f") and "\nret" in out


def test_demo_runs_every_stage_end_to_end(tmp_path):
    repos = tmp_path / "repos"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for repo, modules in {"textkit": ["textwrap", "string", "shlex"], "algos": ["bisect", "heapq", "graphlib"]}.items():
        (repos / repo).mkdir(parents=True)
        for module in modules:
            shutil.copy(stdlib / f"{module}.py", repos / repo / f"{module}.py")
    phases = ('phases=[{name="a",tokens=4096,mixture={"file-high"=1.0,"file-low"=1.0,"repo"=1.0},'
              'schedule={kind="cosine",lr_start=3e-3,lr_end=3e-4}}]')
    result = run_demo(tmp_path / "demo", sources=[str(repos)], overrides=[phases, "data.seq_len=64"], eval_tasks=2)
    assert result.curated_documents > 0
    assert (result.checkpoint / "config.json").is_file() and (result.checkpoint / "tokenizer.json").is_file()
    assert set(result.samples) == {"greedy: def ", "sampled: def ", "greedy: import ", "sampled: import "}
    assert 0.0 <= result.pass_at_1 <= 1.0
    assert (tmp_path / "demo" / "eval" / "results.jsonl").read_text().count("\n") == 2
