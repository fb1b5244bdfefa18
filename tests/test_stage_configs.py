"""One configuration mechanism for every stage: the command's flags, its TOML table (`--config`) and
`config.from_dict` build the same typed config; layers stack as defaults < file < --set < flags; typos and
wrong types fail naming the key, on the command line and in `recipe --check`."""

import importlib
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lingcoder.cli import app
from lingcoder.config import ConfigError, from_dict, load_stage_config, load_toml, stage_config_from_table
from lingcoder.data.curate import CurateConfig
from lingcoder.data.tokenize import TokenizeConfig, TokenizerTrainConfig
from lingcoder.evaluate.runner import EvalConfig
from lingcoder.experiment import ExperimentConfig
from lingcoder.expert_usage import ExpertUsageConfig
from lingcoder.generation.generate import GenerateConfig
from lingcoder.recipe import recipe
from lingcoder.serve.server import ServeConfig
from lingcoder.synth.pipeline import SynthConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# command line -> (module, function the command calls, config class, table, the same settings as a table)
COMMANDS = {
    "curate": (
        ["curate", "repos", "more.jsonl", "--out", "o", "--workers", "3", "--executor", "ray", "--benchmark", "b.jsonl",
         "--classifier-data", "labels.jsonl", "--quiet", "--verbose"],
        "lingcoder.data.curate", "curate", CurateConfig, "curate",
        {"sources": ["repos", "more.jsonl"], "out": "o", "workers": 3, "executor": {"kind": "ray"},
         "benchmarks": ["b.jsonl"], "classifier_data": "labels.jsonl", "quiet": True, "verbose": True},
    ),
    "eval": (
        ["eval", "--out", "o", "--benchmark", "mbpp", "--n", "5", "--temperature", "0.8", "--k", "1,5",
         "--stop", "x", "--no-namespaces", "--limit", "3", "--task", "t/1", "--trust-remote-code"],
        "lingcoder.evaluate.runner", "run_eval", EvalConfig, "eval",
        {"out": "o", "benchmark": "mbpp", "n": 5, "temperature": 0.8, "k": [1, 5], "stop": ["x"],
         "use_namespaces": False, "limit": 3, "tasks": ["t/1"], "trust_remote_code": True},
    ),
    "synth": (
        ["synth", "cur", "--out", "o", "--teacher-mode", "magpie", "--max-problems", "7", "--seed", "3",
         "--timeout", "2.5", "--benchmark", "b.jsonl"],
        "lingcoder.synth.pipeline", "synth", SynthConfig, "synth",
        {"curated": "cur", "out": "o", "teacher_modes": ["magpie"], "max_problems": 7, "seed": 3, "timeout": 2.5,
         "benchmarks": ["b.jsonl"]},
    ),
    "tokenize": (
        ["tokenize", "cur", "--tokenizer", "t", "--out", "o", "--val-fraction", "0.05", "--fim-rate", "0.25",
         "--source", "a=b", "--verbose"],
        "lingcoder.data.tokenize", "tokenize", TokenizeConfig, "tokenize",
        {"curated": "cur", "tokenizer": "t", "out": "o", "val_fraction": 0.05, "fim_rate": 0.25, "sources": ["a=b"],
         "verbose": True},
    ),
    "tokenizer": (
        ["tokenizer", "train", "d", "--out", "o", "--vocab-size", "512"],
        "lingcoder.data.tokenize", "train_tokenizer_on_parquet", TokenizerTrainConfig, "tokenizer",
        {"data": "d", "out": "o", "vocab_size": 512},
    ),
    "serve": (
        ["serve", "m", "--port", "9000", "--max-batch-size", "4", "--served-model-name", "coder"],
        "lingcoder.serve.server", "serve", ServeConfig, "serve",
        {"model_dir": "m", "port": 9000, "max_batch_size": 4, "served_model_name": "coder"},
    ),
    "generate": (
        ["generate", "--model", "m", "--prompt", "a", "--prompt", "b", "--top-k", "5", "--seed", "1"],
        "lingcoder.generation.generate", "generate_from_config", GenerateConfig, "generate",
        {"model": "m", "prompts": ["a", "b"], "top_k": 5, "seed": 1},
    ),
    "expert-usage": (
        ["expert-usage", "r", "--documents", "8", "--tokens", "64"],
        "lingcoder.expert_usage", "expert_usage", ExpertUsageConfig, "expert_usage",
        {"run_dir": "r", "max_documents": 8, "max_tokens": 64},
    ),
    "experiment": (
        ["experiment", "r", "--study", "routing", "--quick", "--seeds", "2", "--tokens", "4096"],
        "lingcoder.experiment", "experiment", ExperimentConfig, "experiment",
        {"run_dir": "r", "study": "routing", "quick": True, "seeds": 2, "tokens": 4096},
    ),
}


class Captured(Exception):
    """Raised by the stand-in stage function: carries the config the command built."""


def built_config(monkeypatch, args: list[str], module: str, function: str):
    """Run the command in-process with its stage function replaced; return the config it was given."""

    def capture(config, *rest, **kwargs):
        raise Captured(config)

    monkeypatch.setattr(importlib.import_module(module), function, capture)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, Captured), result.output
    return result.exception.args[0]


def write_table(path: Path, table: str, values: dict) -> Path:
    lines = [f"[{table}]"] + [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_value(value) -> str:
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_flags_the_toml_table_and_from_dict_give_the_same_config(name, monkeypatch, tmp_path):
    args, module, function, cls, table, values = COMMANDS[name]
    from_flags = built_config(monkeypatch, args, module, function)
    path = write_table(tmp_path / "stage.toml", table, values)
    from_file = load_stage_config(cls, table, path)
    assert from_flags == from_file == from_dict(cls, values, where=table)
    assert isinstance(from_flags, cls)
    # The same table through the command's --config, nothing else given.
    command = args[:2] if args[0] == "tokenizer" else args[:1]  # `tokenizer train`, else one word
    assert built_config(monkeypatch, [*command, "--config", str(path)], module, function) == from_file


def test_layers_stack_defaults_file_set_flags(monkeypatch, tmp_path):
    path = write_table(tmp_path / "eval.toml", "eval", {"out": "from-file", "n": 2, "temperature": 0.5,
                                                          "max_tokens": 100})
    overrides = ["eval.n=3", "eval.temperature=0.7"]
    layered = load_stage_config(EvalConfig, "eval", path, overrides, {"n": 4, "top_p": None})
    assert (layered.out, layered.max_tokens) == ("from-file", 100)  # the file over the defaults
    assert layered.temperature == 0.7  # --set over the file
    assert layered.n == 4  # a flag given over --set
    assert layered.top_p == EvalConfig.top_p and layered.mode == "base"  # None: not given, the default stays
    through_cli = built_config(monkeypatch, ["eval", "--config", str(path), "--set", overrides[0], "--set",
                                             overrides[1], "--n", "4"], "lingcoder.evaluate.runner", "run_eval")
    assert through_cli == layered


def test_a_flag_sets_one_key_of_a_nested_table(monkeypatch, tmp_path):
    """`--executor` sets `[curate.executor] kind` and keeps the table's Ray and Slurm options."""
    path = tmp_path / "curate.toml"
    path.write_text('[curate]\nout = "o"\n[curate.executor]\nkind = "ray"\nslurm_partition = "cpu"\n'
                    "[curate.rules]\nmax_line_length = 50\n")
    args = ["curate", "--config", str(path), "--set", "curate.rules.max_line_length=70"]
    from_file = built_config(monkeypatch, args, "lingcoder.data.curate", "curate")
    assert (from_file.executor.kind, from_file.executor.slurm_partition) == ("ray", "cpu")
    assert from_file.rules.max_line_length == 70
    flagged = built_config(monkeypatch, [*args, "--executor", "slurm"], "lingcoder.data.curate", "curate")
    assert (flagged.executor.kind, flagged.executor.slurm_partition) == ("slurm", "cpu")
    assert flagged.rules.max_line_length == 70 and flagged.out == "o"


@pytest.mark.parametrize(("given", "message"), [
    ({"tempreature": 1.0}, "eval.tempreature: unknown key"),
    ({"n": "many"}, "eval.n: expected int, got 'many'"),
    ({"k": [1, "ten"]}, r"eval.k\[1\]: expected int"),
    ({"use_namespaces": "no"}, "eval.use_namespaces: expected bool"),
])
def test_typos_and_wrong_types_name_the_key(given, message, tmp_path):
    path = write_table(tmp_path / "eval.toml", "eval", {"out": "o", **given})
    with pytest.raises(ConfigError, match=message):
        load_stage_config(EvalConfig, "eval", path)


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "--out", "o", "--set", "eval.n=many"], "eval.n: expected int, got 'many'"),
    (["eval", "--out", "o", "--set", "evl.n=3"], r"reads the \[eval\] table only"),
    (["eval", "--samples", "s.jsonl"], "eval.out: required"),
    (["synth", "cur", "--out", "o", "--set", "synth.max_problem=3"], "synth.max_problem: unknown key"),
    (["tokenize", "cur", "--out", "o"], "tokenize.tokenizer: required"),
    (["serve", "m", "--set", "serve.port=high"], "serve.port: expected int"),
    (["generate", "--model", "m"], "generate.prompts: required"),
    (["experiment", "r", "--config", "missing.toml"], "missing.toml: config file not found"),
    (["curate", "r"], "curate.out: required"),
    (["curate", "r", "--out", "o", "--executor", "spark"], r"curate.executor.kind: expected one of \['local'"),
    (["curate", "r", "--out", "o", "--set", "rules.max_line_length=5"], r"reads the \[curate\] table only"),
    (["curate", "r", "--out", "o", "--set", "curate.rules.max_line_lenght=5"],
     "curate.rules.max_line_lenght: unknown key"),
])
def test_the_command_line_names_the_bad_key(args, message):
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), result.output
    assert re.search(message, str(result.exception)), str(result.exception)


@pytest.mark.parametrize(("override", "message"), [
    ("eval.tempreature=0.5", "eval.tempreature: unknown key"),
    ('eval.mode=1', "eval.mode: expected str"),
    ('synth.max_problems="many"', "synth.max_problems: expected int"),
    ('tokenize.val_fraction="x"', "tokenize.val_fraction: expected float"),
    ("tokenizer.vocab_size=1.5", "tokenizer.vocab_size: expected int"),
    ("sft.epochs=false", "sft.epochs: expected int"),
    ("curate.executor.kind=\"spark\"", "curate.executor.kind: expected one of"),
    ("curate.executor.kind=\"slurm\"", "curate.executor.kind: the recipe needs curation done"),
])
def test_recipe_check_type_checks_every_table(override, message, tmp_path):
    config = tmp_path / "tiny.toml"
    shutil.copy(CONFIGS / "tiny.toml", config)
    with pytest.raises(ConfigError, match=message):
        recipe(config, out=tmp_path / "run", overrides=[override], check=True)
    assert not (tmp_path / "run").exists()


def test_the_demo_keeps_the_recipes_former_stage_settings():
    """Where the recipe's own defaults used to differ from the command line's, tiny.toml says them."""
    data = load_toml(CONFIGS / "tiny.toml")
    tokenize = stage_config_from_table(TokenizeConfig, data, "tokenize", tokenizer="t", out="o")
    assert (tokenize.val_fraction, tokenize.fim_rate, tokenize.seed) == (0.05, 0.5, 0)
    evaluation = stage_config_from_table(EvalConfig, data, "eval", out="o")
    assert (evaluation.mode, evaluation.k, evaluation.limit, evaluation.max_tokens) == ("instruct", [1], 20, 128)
    for name in ("small", "ling-coder-lite"):
        evaluation = stage_config_from_table(EvalConfig, load_toml(CONFIGS / f"{name}.toml"), "eval", out="o")
        assert (evaluation.mode, evaluation.k) == ("instruct", [1])


def test_a_bad_key_is_one_line_on_the_real_command_line():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "lingcoder", "eval", "--out", "o", "--set", "eval.n=many"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "eval.n: expected int" in result.stderr and "Traceback" not in result.stderr
