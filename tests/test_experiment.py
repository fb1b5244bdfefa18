"""`lingcoder experiment RUN --study NAME`: studies as data, run on a tokenized recipe run with micro
models and their quick (tiny-budget) variants; statistics over seeds; resuming; the report's drawing."""

import json
import math
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from lingcoder.config import ConfigError
from lingcoder.errors import LingcoderError
from lingcoder.experiment import ExperimentConfig, experiment, study_configs
from lingcoder.model.config import count_parameters
from lingcoder.recipe import recipe
from lingcoder.report import write_report
from lingcoder.study import load_study, shipped_studies
from lingcoder.study_stats import paired_difference, summarize
from lingcoder.train.config import pretrain_config_from_dict

from .conftest import MICRO_MODEL_TABLE, RECIPE_PRETRAIN_TABLES


@pytest.fixture(scope="module")
def tokenized_run(tmp_path_factory) -> Path:
    """A recipe run through its tokenize stage (20 standard-library files, a 512-token vocabulary)."""
    root = tmp_path_factory.mktemp("study")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    modules = ["textwrap", "string", "shlex", "fnmatch", "glob", "keyword", "copy", "operator", "sched", "queue",
               "bisect", "heapq", "graphlib", "colorsys", "calendar", "statistics", "random", "functools",
               "fractions", "numbers"]
    (root / "repos" / "lib").mkdir(parents=True)
    for module in modules:
        shutil.copy(stdlib / f"{module}.py", root / "repos" / "lib" / f"{module}.py")
    config = root / "recipe.toml"
    config.write_text(RECIPE_PRETRAIN_TABLES.format(model=MICRO_MODEL_TABLE, repos=root / "repos", workers=1))
    run = root / "run"
    recipe(config, out=run, until="tokenize")
    return run


@pytest.fixture
def run(tokenized_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tokenized_run, copy)
    return copy


# -- statistics ------------------------------------------------------------------------------------
def test_summary_is_the_mean_with_a_student_t_interval():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)
    assert s["n"] == 5 and s["mean"] == 3.0 and s["std"] == pytest.approx(math.sqrt(2.5))
    assert (s["low"], s["high"]) == (pytest.approx(3.0 - half), pytest.approx(3.0 + half))
    assert summarize([2.0]) == {"n": 1, "mean": 2.0, "std": None, "low": None, "high": None}


def test_paired_difference_is_taken_seed_by_seed():
    # Seeds differ a lot, the arm is always 0.1 lower: unpaired intervals overlap, the paired one does not.
    baseline = {0: 5.0, 1: 6.0, 2: 7.0}
    arm = {0: 4.9, 1: 5.91, 2: 6.89}
    d = paired_difference(arm, baseline, "val_loss")
    assert d["n"] == 3 and d["mean"] == pytest.approx(-0.1, abs=0.01) and d["high"] < 0
    assert d["wins"] == 3 and d["verdict"] == "better"
    assert paired_difference(arm, baseline, "pass_at_1")["verdict"] == "worse"  # higher is better there
    noisy = paired_difference({0: 5.1, 1: 5.9, 2: 7.0}, baseline, "val_loss")
    assert noisy["verdict"] == "unresolved" and noisy["low"] < 0 < noisy["high"]
    assert paired_difference({0: 1.0, 5: 2.0}, {0: 1.5}, "val_loss")["n"] == 1  # only the seeds both have


# -- study files -----------------------------------------------------------------------------------
def test_the_shipped_studies_load_with_their_quick_variants():
    assert shipped_studies() == ["curated-vs-raw", "inference-k", "moe-vs-dense", "routing"]
    for name in shipped_studies():
        study = load_study(name)
        assert study.seeds >= 5 and study.baseline in [a.name for a in study.arms]
        quick = study.variant(quick=True)
        assert quick.name == f"{name}-quick" and quick.seeds < study.seeds


def test_every_arm_is_the_recipe_config_with_its_overrides(run):
    study, base, configs = study_configs(run, "routing")
    models = {arm: pretrain_config_from_dict(config).model for arm, config in configs.items()}
    params = {arm: count_parameters(m) for arm, m in models.items()}
    assert [models[a].num_experts_per_tok for a in ("top1", "top2", "top4")] == [1, 2, 4]
    assert params["top1"][1] < params["top2"][1] < params["top4"][1]
    # Granularity and shared experts off: the same activated parameters as top2, the routers' weights aside;
    # finer experts also keep the total.
    for arm in ("experts32", "experts64", "no-shared"):
        m = models[arm]
        routers = m.num_hidden_layers * m.hidden_size * (m.num_experts - models["top2"].num_experts)
        assert params[arm][1] - params["top2"][1] == routers, arm
        if arm != "no-shared":
            assert params[arm][0] - params["top2"][0] == routers, arm
    assert models["aux-free"].router_aux_loss_coef == 0 and models["aux-free"].moe_router_bias_update_rate > 0
    assert models["no-zloss"].router_z_loss_coef == 0
    assert all(m.tie_word_embeddings and m.num_hidden_layers == 6 for m in models.values())
    assert sum(p.tokens for p in pretrain_config_from_dict(base).phases) == study.tokens

    _, _, configs = study_configs(run, "moe-vs-dense")
    moe, dense = (count_parameters(pretrain_config_from_dict(configs[a]).model) for a in ("moe", "dense"))
    assert dense[0] < moe[0] and abs(dense[1] - moe[1]) / moe[1] < 0.02


STUDY = """
seeds = 2
tokens = 512
baseline = "small"
{extra}
[[arms]]
name = "small"
set = ["model.moe_intermediate_size=8"]

[[arms]]
name = "{second}"
set = ["{override}"]
"""


@pytest.mark.parametrize(("extra", "second", "override", "message"), [
    ("", "small", "model.num_experts=4", "arm names must be unique (small repeated)"),
    ('baseline = "nope"', "big", "model.num_experts=4", None),  # TOML: a repeated key is invalid
    ("", "big", "model.num_expertz=4", "arm 'big': model.num_expertz: unknown key"),
    ("", "big", "model.num_experts_per_tok=99", "arm 'big': model: invalid BailingMoeConfig: num_experts_per_tok"),
    ('kind = "inference"', "big", "train.seed=3", "an inference arm sets model fields only"),
    ('metrics = ["bleu"]', "big", "model.num_experts=4", "metric 'bleu' is not one a train study measures"),
    ("colour = 1", "big", "model.num_experts=4", "colour: unknown key"),
])
def test_a_bad_study_file_is_an_error_naming_the_problem(run, tmp_path, extra, second, override, message):
    path = tmp_path / "mine.toml"
    path.write_text(STUDY.format(extra=extra, second=second, override=override))
    with pytest.raises(ConfigError, match=(message or "invalid TOML").replace("(", r"\(").replace(")", r"\)")):
        study_configs(run, str(path))


def test_unknown_studies_and_missing_quick_variants_are_clear_errors(run, tmp_path):
    with pytest.raises(ConfigError, match="study 'nope': unknown \\(shipped: curated-vs-raw, inference-k"):
        experiment(ExperimentConfig(run, "nope"))
    path = tmp_path / "mine.toml"
    path.write_text(STUDY.format(extra="", second="big", override="model.num_experts=4"))
    with pytest.raises(ConfigError, match="no \\[quick\\] table"):
        experiment(ExperimentConfig(run, str(path), quick=True))
    with pytest.raises(LingcoderError, match="not a recipe run directory"):
        experiment(ExperimentConfig(tmp_path, "moe-vs-dense", quick=True))


# -- running studies -------------------------------------------------------------------------------
def test_moe_vs_dense_quick_runs_resumes_and_is_drawn(run):
    entry = experiment(ExperimentConfig(run, "moe-vs-dense", quick=True))
    assert [(r["arm"], r["seed"]) for r in entry["runs"]] == [("moe", 0), ("dense", 0), ("moe", 1), ("dense", 1)]
    moe, dense = entry["runs"][:2]
    assert abs(dense["activated_params"] - moe["activated_params"]) / moe["activated_params"] < 0.02
    assert dense["total_params"] < moe["total_params"]
    assert all(math.isfinite(r["val_loss"]) for r in entry["runs"])
    assert entry["runs"][0]["val_loss"] != entry["runs"][2]["val_loss"]  # seeds differ
    # Loss against tokens seen, from each run's kept metrics.
    assert [t for t, _ in moe["val_curve"]] == [1024, 2048] and moe["tokens"] == entry["tokens"] == 2048
    assert (run / "experiment" / "moe-vs-dense-quick" / "moe-seed0" / "pretrain" / "metrics.jsonl").is_file()
    assert len(moe["expert_load"]) == 2 and len(moe["expert_load"][0]) == 16 and dense["expert_load"] is None
    stats = entry["stats"]
    assert stats["interval"].startswith("95% Student-t")
    assert stats["arms"]["moe"]["val_loss"]["n"] == 2 and stats["arms"]["moe"]["val_loss"]["low"] is not None
    difference = stats["paired"]["moe"]["val_loss"]
    expected = [entry["runs"][i]["val_loss"] - entry["runs"][i + 1]["val_loss"] for i in (0, 2)]
    assert difference["mean"] == pytest.approx(sum(expected) / 2) and "dense" not in stats["paired"]
    assert json.loads((run / "experiment" / "results.json").read_text())["moe-vs-dense-quick"] == entry

    # Finished runs are reused; an interrupted one continues from its last complete checkpoint.
    root = run / "experiment" / "moe-vs-dense-quick"
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/result.json")}
    (root / "dense-seed1" / "result.json").unlink()
    shutil.rmtree(root / "dense-seed1" / "pretrain" / "checkpoints" / "step-00000008")
    kept = root / "dense-seed1" / "pretrain" / "checkpoints" / "step-00000004"
    kept_stamp = kept.stat().st_mtime_ns
    again = experiment(ExperimentConfig(run, "moe-vs-dense", quick=True))
    assert kept.stat().st_mtime_ns == kept_stamp  # not restarted from scratch
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.parent.name != "dense-seed1")
    assert [r["val_loss"] for r in again["runs"][:3]] == [r["val_loss"] for r in entry["runs"][:3]]
    assert math.isfinite(again["runs"][3]["val_loss"]) and again["runs"][3]["tokens"] == 2048

    page = (run / "report.html").read_text()
    for figure in ("study-moe-vs-dense-quick", "study-moe-vs-dense-quick-expert-load"):
        assert f'data-plot="{figure}"' in page
    assert "what it supports" in page and "moe vs dense" in page


def test_routing_quick_trains_every_arm(run):
    entry = experiment(ExperimentConfig(run, "routing", quick=True, seeds=1))
    by_arm = {r["arm"]: r for r in entry["runs"]}
    assert list(by_arm) == ["top2", "top1", "top4", "experts32", "experts64", "no-shared", "aux-free", "no-zloss"]
    assert len(by_arm["experts64"]["expert_load"][0]) == 64 and len(by_arm["top2"]["expert_load"][0]) == 16
    assert all(math.isfinite(r["val_loss"]) for r in entry["runs"])
    assert entry["stats"]["paired"]["top1"]["val_loss"]["n"] == 1  # one seed: a difference, no interval
    assert 'data-plot="study-routing-quick"' in (run / "report.html").read_text()


def test_inference_k_evaluates_one_trained_model_per_seed_with_other_k(run):
    entry = experiment(ExperimentConfig(run, "inference-k", quick=True))
    assert sorted((run / "experiment" / "inference-k-quick").glob("*/result.json")) == [
        run / "experiment" / "inference-k-quick" / f"trained-seed{s}" / "result.json" for s in (0, 1)]
    seed0 = {r["arm"]: r for r in entry["runs"] if r["seed"] == 0}
    assert [seed0[a]["num_experts_per_tok"] for a in ("k1", "k2", "k4", "k8")] == [1, 2, 4, 8]
    assert seed0["k1"]["activated_params"] < seed0["k2"]["activated_params"] < seed0["k8"]["activated_params"]
    assert all(math.isfinite(r["val_loss"]) and r["decode_ms_per_token"] > 0 for r in entry["runs"])
    assert len({r["val_loss"] for r in seed0.values()}) == 4  # another k, another loss
    assert set(entry["stats"]["paired"]) == {"k1", "k4", "k8"}


def test_curated_vs_raw_quick_scores_held_out_files(run):
    entry = experiment(ExperimentConfig(run, "curated-vs-raw", quick=True, seeds=1, eval_tasks=1))
    assert [r["arm"] for r in entry["runs"]] == ["curated", "raw"]
    for r in entry["runs"]:
        assert math.isfinite(r["heldout_loss"]) and math.isfinite(r["humaneval_canonical_loss"])
        assert 0.0 <= r["pass_at_1"] <= 1.0
    raw_index = json.loads((run / "experiment" / "raw" / "tokens" / "index.json").read_text())
    curated_index = json.loads((run / "tokens" / "index.json").read_text())
    assert raw_index["val_fraction"] == curated_index["val_fraction"] and raw_index["seed"] == curated_index["seed"]
    assert set(entry["stats"]["arms"]["curated"]) == {"heldout_loss", "humaneval_canonical_loss", "pass_at_1"}


def test_cli_runs_a_users_study_file_and_reports_bad_input_in_one_line(run, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(STUDY.format(extra="", second="big", override="model.moe_intermediate_size=24"))
    command = [sys.executable, "-m", "lingcoder", "experiment", str(run), "--study", str(path), "--seeds", "1",
               "--tokens", "256"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    entry = json.loads((run / "experiment" / "results.json").read_text())["mine"]
    assert [r["arm"] for r in entry["runs"]] == ["small", "big"] and entry["tokens"] == 256
    assert "big" in result.stdout and "minus small" in result.stdout
    result = subprocess.run([*command[:4], str(run), "--study", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "study 'nope': unknown" in result.stderr and "Traceback" not in result.stderr


def test_the_report_explains_an_older_results_file(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "results.json").write_text('{"moe_vs_dense": {"tokens": 1, "runs": []}}')
    with pytest.raises(LingcoderError, match="moe_vs_dense\\]: not a study's results"):
        write_report(tmp_path)
