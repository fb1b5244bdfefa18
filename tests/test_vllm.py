"""The real vLLM loads lingcoder's checkpoints unchanged and agrees with lingcoder: greedy tokens on every
architecture variant, `lingcoder serve --engine vllm` and `lingcoder eval --backend vllm|openai` verdicts.

vLLM lives in its own environment (`make vllm-env` builds .venv-vllm; $LINGCODER_VLLM_PYTHON points
elsewhere); without it these tests skip. Few vLLM processes, since each start costs most of the time.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from lingcoder.data.tokenizer import SPECIAL_TOKENS, save_tokenizer, train_tokenizer
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.generation.generate import generate_ids, load_for_generation
from lingcoder.generation.sampling import SamplingParams
from lingcoder.model import BailingMoeForCausalLM
from lingcoder.model.config import BailingMoeConfig
from lingcoder.vllm_server import PYTHON_ENV, free_port

from .conftest import embedded_text

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = os.environ.get(PYTHON_ENV) or str(ROOT / ".venv-vllm" / "bin" / "python")
pytestmark = pytest.mark.skipif(not Path(VLLM_PYTHON).exists(),
                                reason=f"no vLLM environment at {VLLM_PYTHON} (`make vllm-env` builds it)")

# head_dim 32: vLLM's CPU attention kernels take 32, 64, 80, 96, 112, 128, 256 (not 8 or 16).
SHAPE = dict(vocab_size=512, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, head_dim=32,
             num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, intermediate_size=96,
             max_position_embeddings=512)
FULL = dict(norm_head=True, num_shared_experts=2, first_k_dense_replace=1, num_key_value_heads=1, use_qkv_bias=True)
AUX_FREE = dict(norm_head=True, num_shared_experts=1, num_key_value_heads=2, score_function="sigmoid",
                moe_router_enable_expert_bias=True)
VARIANTS = {
    "normhead-shared-dense-gqa1-qkvbias-fp32": dict(**FULL, torch_dtype="float32"),
    "normhead-shared-dense-gqa1-qkvbias-bf16": dict(**FULL, torch_dtype="bfloat16"),
    "no-normhead-no-shared-fp32": dict(norm_head=False, num_shared_experts=0, num_key_value_heads=2,
                                       torch_dtype="float32"),
    "aux-free-sigmoid-groups-scaled-fp32": dict(**AUX_FREE, n_group=2, topk_group=1, routed_scaling_factor=2.5,
                                                torch_dtype="float32"),
    "aux-free-sigmoid-bf16": dict(**AUX_FREE, torch_dtype="bfloat16"),
}
PROMPTS = [[5, 6, 7, 8], [100, 200, 300, 17, 4, 9, 22, 301, 302], [42], list(range(260, 300))]
NEW_TOKENS = 16


def random_checkpoint(config: BailingMoeConfig, directory: Path, tokenizer, seed: int = 0,
                      std: float = 0.15) -> Path:
    """Weights wide enough that greedy decoding does not collapse to one repeated token, biases and router
    biases non-zero, and head columns of unequal norms (so NormHead changes the argmax)."""
    torch.manual_seed(seed)
    model = BailingMoeForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
        model.lm_head.weight.mul_(torch.rand(config.hidden_size) * 3)
        for name, buffer in model.named_buffers():
            if name.endswith("expert_bias"):
                buffer.copy_(0.3 * torch.rand_like(buffer))
    model.to(getattr(torch, config.torch_dtype)).save_pretrained(directory)
    save_tokenizer(tokenizer, directory, model_max_length=config.max_position_embeddings)
    return directory


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(embedded_text()[:4], vocab_size=SHAPE["vocab_size"])


@pytest.fixture(scope="module")
def vllm_greedy(tmp_path_factory, tokenizer):
    """{variant: (checkpoint, vLLM's tokens, AutoConfig's view)}, from one vLLM process for all variants."""
    root = tmp_path_factory.mktemp("vllm-greedy")
    runs, dirs = [], {}
    for name, overrides in VARIANTS.items():
        config = BailingMoeConfig.preset("tiny", **SHAPE, **overrides)
        dirs[name] = random_checkpoint(config, root / name, tokenizer)
        runs.append({"model": str(dirs[name]), "dtype": config.torch_dtype, "prompts": PROMPTS,
                     "max_tokens": NEW_TOKENS, "config_fields": list(overrides)})
    (root / "spec.json").write_text(json.dumps({"runs": runs}))
    done = subprocess.run([VLLM_PYTHON, str(ROOT / "tests" / "vllm_greedy.py"), str(root / "spec.json"),
                           str(root / "out.json")], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    results = json.loads((root / "out.json").read_text())["runs"]
    return {name: (dirs[name], r["tokens"], r["config"]) for name, r in zip(VARIANTS, results, strict=True)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vllm_greedy_tokens_equal_lingcoders(vllm_greedy, variant):
    """fp32: every token equal. bf16: a random model's greedy path soon meets near-ties that rounding decides
    (our own bf16 and fp32 runs part ways too), so each engine's every bf16 choice must be a token that the
    exact (fp32) computation of the same weights, fed that engine's own sequence, rates within BF16_GAP
    logits of its best."""
    directory, vllm_tokens, _ = vllm_greedy[variant]
    model, _ = load_for_generation(directory)  # as `lingcoder generate` loads it: the stored dtype
    ours = generate_ids(model, PROMPTS, SamplingParams(max_tokens=NEW_TOKENS))
    assert len({t for row in ours for t in row}) > 3 * len(PROMPTS)  # real sequences, not one token repeated
    if VARIANTS[variant]["torch_dtype"] == "float32":
        assert vllm_tokens == ours
        return
    exact = load_for_generation(directory, dtype="float32")[0]
    for engine, rows in (("vllm", vllm_tokens), ("lingcoder", ours)):
        gaps = [choice_gaps(exact, prompt, row) for prompt, row in zip(PROMPTS, rows, strict=True)]
        assert max(max(g) for g in gaps) <= BF16_GAP, (engine, gaps)


BF16_GAP = 0.1  # logits; these models' logits span about +-1.2 (std 0.35); our own bf16 run stays within 0.05


@torch.no_grad()
def choice_gaps(model, prompt: list[int], generated: list[int]) -> list[float]:
    """For each generated token: how far below the best logit the model puts it, given the tokens before."""
    logits = model(torch.tensor([prompt + generated])).logits[0, len(prompt) - 1 : -1].float()
    chosen = logits.gather(-1, torch.tensor(generated)[:, None])[:, 0]
    return (logits.max(dim=-1).values - chosen).tolist()


def test_transformers_autoconfig_reads_every_variant(vllm_greedy):
    for name, overrides in VARIANTS.items():
        directory, _, seen = vllm_greedy[name]
        assert (directory / "configuration_bailing_moe.py").is_file()
        assert seen["class"] == "BailingMoeConfig" and seen["model_type"] == "bailing_moe"
        fields = {k: v for k, v in overrides.items() if k != "torch_dtype"}  # transformers turns it into `dtype`
        assert {k: seen[k] for k in fields} == fields, name


@pytest.fixture(scope="module")
def eval_checkpoint(tmp_path_factory, tokenizer):
    config = BailingMoeConfig.preset("tiny", **{**SHAPE, **VARIANTS["no-normhead-no-shared-fp32"]})
    return random_checkpoint(config, tmp_path_factory.mktemp("eval") / "coder", tokenizer)


EVAL = dict(tasks=["HumanEval/0", "HumanEval/2", "HumanEval/4"], mode="base", max_tokens=24, k=[1],
            progress=False, min_timeout=2.0)


def rows(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def checkpoint_eval(tmp_path_factory, eval_checkpoint):
    out = tmp_path_factory.mktemp("eval-checkpoint")
    run_eval(EvalConfig(str(out), backend="checkpoint", model=str(eval_checkpoint), **EVAL))
    return out


def assert_same_eval(out: Path, reference: Path, drop_special_tokens: bool = False) -> None:
    """Same samples (the raw text) and the same verdict for each. A vLLM server asked through the plain
    OpenAI API leaves special tokens out of the text (`skip_special_tokens`), which lingcoder keeps."""
    expected = [s["raw"] for s in rows(reference, "samples.jsonl")]
    if drop_special_tokens:
        expected = [re.sub("|".join(map(re.escape, SPECIAL_TOKENS)), "", text) for text in expected]
    assert [s["raw"] for s in rows(out, "samples.jsonl")] == expected
    verdicts = [(r["task_id"], r["verdict"]) for r in rows(out, "results.jsonl")]
    assert verdicts == [(r["task_id"], r["verdict"]) for r in rows(reference, "results.jsonl")]


def test_serve_engine_vllm_with_eval_openai_and_ctrl_c(eval_checkpoint, checkpoint_eval, tmp_path):
    """`lingcoder serve --engine vllm`, started with SIGINT ignored (as from a script), serves eval's openai
    backend the checkpoint backend's samples and verdicts, and still stops on Ctrl-C."""
    port = free_port()
    env = {**os.environ, PYTHON_ENV: VLLM_PYTHON}
    command = [sys.executable, "-m", "lingcoder", "serve", str(eval_checkpoint), "--engine", "vllm",
               "--port", str(port), "--served-model-name", "vllm-coder"]
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 900
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(1)
        run_eval(EvalConfig(str(tmp_path / "served"), backend="openai", model="vllm-coder",
                            base_url=f"http://127.0.0.1:{port}/v1", **EVAL))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
        log.close()
    assert_same_eval(tmp_path / "served", checkpoint_eval, drop_special_tokens=True)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health")  # the vLLM server went with it


def test_eval_backend_vllm_starts_and_stops_its_server(eval_checkpoint, checkpoint_eval, tmp_path, monkeypatch):
    monkeypatch.setenv(PYTHON_ENV, VLLM_PYTHON)
    run_eval(EvalConfig(str(tmp_path / "vllm"), backend="vllm", model=str(eval_checkpoint), **EVAL))
    assert_same_eval(tmp_path / "vllm", checkpoint_eval)
    stray = subprocess.run(["pgrep", "-f", f"api_server --model {eval_checkpoint}"], capture_output=True)
    assert stray.returncode == 1, "the vLLM server outlived the eval"
