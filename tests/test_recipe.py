"""`lingcoder recipe`: every stage into one run directory, skipped when complete, resumed when cut short."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from lingcoder.errors import LingcoderError
from lingcoder.experiment import completion_loss
from lingcoder.recipe import recipe

from .conftest import MICRO_MODEL_TABLE, RECIPE_PRETRAIN_TABLES

CONFIG = RECIPE_PRETRAIN_TABLES + """
[synth]
max_problems = 8

[sft]
seq_len = 1024
micro_batch_size = 4
epochs = 2
eval_every = 2
checkpoint_every = 2
schedule = {{ kind = "cosine", lr_start = 1e-3, lr_end = 1e-4 }}

[dpo]
seq_len = 1024
micro_batch_size = 2
epochs = 1
checkpoint_every = 2
schedule = {{ kind = "constant", lr_start = 1e-4 }}

[eval]
limit = 2
mode = "base"
max_tokens = 32
k = [1]
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipe")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    # Document ids hash the sources' absolute paths, so the validation split moves with the tmp dir: 20 files
    # and a 0.5 split make "no held-out high-quality file" about a one-in-a-million draw.
    repos = {"textkit": ["textwrap", "string", "shlex", "fnmatch", "glob", "keyword", "copy", "operator", "sched",
                         "queue"],
             "algos": ["bisect", "heapq", "graphlib", "colorsys", "calendar", "statistics", "random", "functools",
                       "fractions", "numbers"]}
    for repo, modules in repos.items():
        (root / "repos" / repo).mkdir(parents=True)
        for module in modules:
            shutil.copy(stdlib / f"{module}.py", root / "repos" / repo / f"{module}.py")
    path = root / "recipe.toml"
    path.write_text(CONFIG.format(model=MICRO_MODEL_TABLE, repos=root / "repos", workers=2))
    return path


@pytest.fixture(scope="module")
def finished_run(config, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    recipe(config, out=run)
    return run


def stage_times(run: Path) -> dict[str, str]:
    """When each stage last finished; the report is rebuilt on every run, so it is left out."""
    return {name: entry["finished_at"] + str(entry["seconds"])
            for name, entry in json.loads((run / "recipe.json").read_text())["stages"].items() if name != "report"}


def test_every_stage_writes_its_outputs(finished_run):
    record = json.loads((finished_run / "recipe.json").read_text())
    assert list(record["stages"]) == ["curate", "tokenizer", "tokenize", "pretrain", "synth", "sft", "dpo",
                                      "expert-usage", "eval", "report"]
    assert all(entry["status"] == "done" for entry in record["stages"].values())
    assert (finished_run / "curated" / "stats.json").is_file()
    assert (finished_run / "tokens" / "index.json").is_file()
    checkpoint = Path(record["stages"]["pretrain"]["outputs"][0])
    assert checkpoint.parent == finished_run / "pretrain" / "checkpoints" and (checkpoint / "config.json").is_file()
    assert "humaneval" in (finished_run / "report.html").read_text()
    assert record["stages"]["expert-usage"]["outputs"] == [str(finished_run / "expert_usage.json")]
    assert (finished_run / "synth" / "sft.jsonl").read_text().count("\n") >= 1
    sft, dpo = (Path(record["stages"][stage]["outputs"][0]) for stage in ("sft", "dpo"))
    assert sft.parent == finished_run / "sft" / "checkpoints" and dpo.parent == finished_run / "dpo" / "checkpoints"
    assert json.loads((finished_run / "eval" / "generation.json").read_text())["model"] == str(dpo)
    summary = json.loads((finished_run / "eval" / "summary.json").read_text())
    assert summary["n_tasks"] == 2 and record["config"]["eval"]["limit"] == 2


def test_a_finished_run_is_skipped_and_an_edit_reruns_from_the_stage_it_touches(config, finished_run):
    before = stage_times(finished_run)
    recipe(config, out=finished_run)
    assert stage_times(finished_run) == before

    recipe(config, out=finished_run, overrides=["eval.max_tokens=16"])
    after = stage_times(finished_run)
    assert {name for name in before if after[name] != before[name]} == {"eval"}

    recipe(config, out=finished_run, overrides=["eval.max_tokens=16"], from_stage="tokenize", until="tokenize")
    assert {name for name in after if stage_times(finished_run)[name] != after[name]} == {"tokenize"}


def test_an_interrupted_pretraining_resumes_from_its_last_checkpoint(config, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    record_path = run / "recipe.json"
    text = record_path.read_text().replace(str(finished_run), str(run))
    record = json.loads(text)
    # As if killed after the step-4 checkpoint: the stage started, its last checkpoint never written.
    checkpoints = sorted((run / "pretrain" / "checkpoints").iterdir())
    shutil.rmtree(checkpoints[-1])
    record["stages"]["pretrain"] = {"status": "started", "fingerprint": record["stages"]["pretrain"]["fingerprint"]}
    record_path.write_text(json.dumps(record))

    recipe(config, out=run)
    record = json.loads(record_path.read_text())
    assert record["stages"]["pretrain"]["status"] == "done"
    assert Path(record["stages"]["pretrain"]["outputs"][0]).name == checkpoints[-1].name
    resumed = [r for r in map(json.loads, (run / "pretrain" / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "train"]
    original = [r for r in map(json.loads, (finished_run / "pretrain" / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"]
    last = {r["step"]: r["lm_loss"] for r in resumed}
    assert last == {r["step"]: r["lm_loss"] for r in original}  # exact resume: the same losses
    assert (run / "eval" / "summary.json").is_file()


def test_bad_input_is_one_clear_error(config, tmp_path):
    for override, message in (("synth.max_problem=3", "synth.max_problem: unknown key"),
                              ("eval.task=3", "eval.task: unknown key"),
                              ("curate.rules.max_line_lenght=3", "rules.max_line_lenght: unknown key"),
                              ("phases=[]", "at least one \\[\\[phases\\]\\] table")):
        with pytest.raises(LingcoderError, match=message):
            recipe(config, out=tmp_path, overrides=[override])
        assert not (tmp_path / "curated").exists()  # checked before any stage ran
    with pytest.raises(LingcoderError, match="--from 'pretrian': unknown stage"):
        recipe(config, out=tmp_path, from_stage="pretrian")
    (tmp_path / "recipe.json").write_text("{not json")
    with pytest.raises(LingcoderError, match="recipe.json: not valid JSON"):
        recipe(config, out=tmp_path)
    result = subprocess.run([sys.executable, "-m", "lingcoder", "recipe", str(tmp_path / "missing.toml")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "config file not found" in result.stderr


def test_completion_loss_counts_only_the_completion_tokens(micro_model):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, **{chr(c): i + 1 for i, c in enumerate(range(32, 127))}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    prompt, completion = "def f(", "x):"
    ids = [0] + tokenizer.encode(prompt + completion).ids
    logits = micro_model(torch.tensor([ids[:-1]])).logits[0]
    expected = torch.nn.functional.cross_entropy(logits[len(prompt):], torch.tensor(ids[len(prompt) + 1:]))
    assert completion_loss(micro_model, tokenizer, [(prompt, completion)]) == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["tiny", "small", "ling-coder-lite"])
def test_the_shipped_configs_are_valid_for_every_stage(name, tmp_path):
    root = Path(__file__).parent.parent / "configs"
    record = recipe(root / f"{name}.toml", out=tmp_path / "run", check=True)
    assert set(record["config"]) >= {"run", "curate", "model", "phases", "synth", "sft", "dpo", "eval"}
    assert not (tmp_path / "run").exists()  # a check writes nothing


def test_check_shows_the_plan_on_the_command_line(config, finished_run):
    result = subprocess.run([sys.executable, "-m", "lingcoder", "recipe", str(config), "--out", str(finished_run),
                             "--check", "--set", "dpo.beta=0.2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert "skip (done)" in lines["sft"] and "run" in lines["dpo"] and "run" in lines["eval"]


def test_the_post_trained_model_is_served_and_scores_the_same_through_the_server(finished_run, tmp_path):
    """Issue 6's acceptance on the recipe's own output: `serve` answers a chat request from the DPO model, and
    the eval harness scores it through the endpoint exactly as it does directly."""
    import httpx

    from lingcoder.evaluate.runner import EvalConfig, run_eval
    from lingcoder.serve.server import serve_in_background

    record = json.loads((finished_run / "recipe.json").read_text())
    model = Path(record["stages"]["dpo"]["outputs"][0])
    tasks = ["HumanEval/0", "HumanEval/2"]
    settings = {"benchmark": "humaneval", "mode": "instruct", "max_tokens": 24, "tasks": tasks, "k": [1],
                "workers": 1, "progress": False}
    direct = run_eval(EvalConfig(tmp_path / "direct", backend="checkpoint", model=str(model), **settings))
    with serve_in_background(model) as base_url:
        reply = httpx.post(f"{base_url}/chat/completions", timeout=60, json={
            "model": model.name, "messages": [{"role": "user", "content": "Write a function that adds."}],
            "max_tokens": 8, "temperature": 0})
        served = run_eval(EvalConfig(tmp_path / "served", backend="openai", model=model.name, base_url=base_url,
                                     **settings))
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"
    assert served["pass_at_k"] == direct["pass_at_k"]
    rows = [[json.loads(line) for line in (tmp_path / name / "results.jsonl").read_text().splitlines()]
            for name in ("direct", "served")]
    assert [(r["task_id"], r["digest"], r["verdict"]) for r in rows[0]] == \
        [(r["task_id"], r["digest"], r["verdict"]) for r in rows[1]]


def test_eval_and_synth_stages_choose_vllm_by_config_key(tmp_path):
    tiny = Path(__file__).parent.parent / "configs" / "tiny.toml"
    record = recipe(tiny, overrides=["eval.backend=vllm", "synth.candidates_engine=vllm"], out=tmp_path / "run",
                    check=True)
    assert record["config"]["eval"]["backend"] == "vllm" and record["config"]["synth"]["candidates_engine"] == "vllm"
    with pytest.raises(LingcoderError, match="eval.backend .tgi.: unknown for the recipe"):
        recipe(tiny, overrides=["eval.backend=tgi"], out=tmp_path / "run", check=True)
