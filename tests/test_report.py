"""The HTML report of a run directory: a small but real run (curate, tokenizer, tokenize, a few
pretraining steps of a micro model, a judged evaluation, an experiment results file), the page
checked section by section, partial and malformed run directories, the CLI, and every figure
rendered by a headless chromium."""

from __future__ import annotations

import base64
import gzip
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy import stats as scipy_stats

from lingcoder import expert_usage as expert_usage_module
from lingcoder.cli import main
from lingcoder.data.curate import CurateConfig, curate
from lingcoder.data.decontaminate import humaneval_path
from lingcoder.data.shards import TokenIndex
from lingcoder.data.split import is_held_out
from lingcoder.data.tokenize import TokenizeConfig, TokenizerTrainConfig, tokenize, train_tokenizer_on_parquet
from lingcoder.errors import LingcoderError
from lingcoder.evaluate.runner import EvalConfig, run_eval
from lingcoder.expert_usage import ExpertUsageConfig, cached_expert_usage, expert_usage
from lingcoder.model import BailingMoeConfig, count_parameters
from lingcoder.report import write_report
from lingcoder.report.page import Section, figure_html, render_page
from lingcoder.report.plots import subsample
from lingcoder.runfiles import read_metrics
from lingcoder.train.config import load_pretrain_config
from lingcoder.train.pretrain import pretrain

from .conftest import MICRO_MODEL_TABLE, STDLIB_MODULES

GO = """package inventory

import "fmt"

// Item is one line of stock.
type Item struct {
\tName     string
\tPrice    float64
\tQuantity int
}

// Total is the value of the stock.
func Total(items []Item) float64 {
\ttotal := 0.0
\tfor _, item := range items {
\t\ttotal += item.Price * float64(item.Quantity)
\t}
\treturn total
}

// Describe prints each item.
func Describe(items []Item) {
\tfor i, item := range items {
\t\tfmt.Printf("%d: %s x%d\\n", i, item.Name, item.Quantity)
\t}
}
"""
SHELL = """#!/usr/bin/env bash
# Back up a directory into a dated tarball and keep the newest five.
set -euo pipefail
src="${1:?usage: backup.sh DIR}"
dest="${BACKUP_DIR:-$HOME/backups}"
mkdir -p "$dest"
stamp="$(date +%Y%m%d-%H%M%S)"
tar -czf "$dest/$(basename "$src")-$stamp.tar.gz" -C "$(dirname "$src")" "$(basename "$src")"
ls -1t "$dest"/*.tar.gz | tail -n +6 | xargs -r rm --
echo "backed up $src to $dest"
"""
CONFIG = """
{model}
[data]
tokens = "{tokens}"
seq_len = 64
eval_tokens = 512

[train]
out = "{out}"
micro_batch_size = 4
eval_every = 4
checkpoint_every = 100

[[phases]]
name = "stage1"
tokens = 1024
mixture = {mixture}
schedule = {{ kind = "multistep", lr_start = 3e-3, lr_end = 1.5e-3, warmup_steps = 2 }}

[[phases]]
name = "anneal"
tokens = 1024
mixture = {mixture}
schedule = {{ kind = "inverse_sqrt", lr_start = 1.5e-3, lr_end = 1.5e-5 }}
"""
def study_entry(study: str, metrics: list[str], baseline: str, runs: list[dict], kind: str = "train") -> dict:
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    return {"study": study, "description": study, "kind": kind, "tokens": 4096, "steps": 16, "seeds": [0, 1],
            "metrics": metrics, "baseline": baseline, "arms": [{"name": a, "set": [], "data": "recipe"} for a in arms],
            "runs": runs}


LOAD = [[0.2, 0.1, 0.05, 0.15, 0.1, 0.1, 0.2, 0.1], [0.125] * 8]
EXPERIMENT = {
    "moe-vs-dense": study_entry("moe-vs-dense", ["val_loss"], "dense", [
        {"arm": "moe", "seed": 0, "total_params": 67232, "activated_params": 48800, "val_loss": 4.0,
         "val_curve": [[0, 6.2], [2048, 5.0], [4096, 4.0]], "expert_load": LOAD, "router_entropy": [1.5, 1.9]},
        {"arm": "dense", "seed": 0, "total_params": 48800, "activated_params": 48800, "val_loss": 4.5,
         "val_curve": [[0, 6.2], [2048, 5.4], [4096, 4.5]], "expert_load": None, "router_entropy": None},
        {"arm": "moe", "seed": 1, "total_params": 67232, "activated_params": 48800, "val_loss": 4.2,
         "val_curve": [[0, 6.3], [2048, 5.1], [4096, 4.2]], "expert_load": LOAD, "router_entropy": [1.6, 1.8]},
        {"arm": "dense", "seed": 1, "total_params": 48800, "activated_params": 48800, "val_loss": 4.6,
         "val_curve": [[0, 6.2], [2048, 5.5], [4096, 4.6]], "expert_load": None, "router_entropy": None}]),
    "curated-vs-raw": study_entry("curated-vs-raw", ["heldout_loss", "humaneval_canonical_loss", "pass_at_1"], "raw", [
        {"arm": "curated", "seed": 0, "heldout_loss": 4.25, "humaneval_canonical_loss": 3.5, "pass_at_1": 0.0,
         "val_curve": [[0, 6.0], [4096, 4.3]]},
        {"arm": "raw", "seed": 0, "heldout_loss": 4.5, "humaneval_canonical_loss": 3.75, "pass_at_1": 0.0,
         "val_curve": [[0, 6.0], [4096, 4.6]]}]),
}
SECTIONS = ["curation", "training", "expert-load", "expert-usage", "evaluation", "model-card", "experiment"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_corpus(root: Path) -> Path:
    """Real code in four languages, plus files curation must drop (a duplicate, data, an empty file)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_MODULES[:12]:
        write(root / "pyrepo" / f"{name}.py", (stdlib / f"{name}.py").read_text())
    web = Path(matplotlib.__file__).parent / "backends" / "web_backend" / "js"
    for js in sorted(web.glob("*.js")):
        write(root / "webrepo" / js.name, js.read_text())
    write(root / "gorepo" / "inventory.go", GO)
    write(root / "gorepo" / "backup.sh", SHELL)
    write(root / "gorepo" / "prices.csv", "item,price\napple,1\npear,2\n")
    write(root / "gorepo" / "empty.py", "")
    shutil.copy(stdlib / "heapq.py", root / "gorepo" / "heapq_copy.py")
    return root


def split_seed(curated: Path) -> int:
    """A validation-split seed that holds out at least one document of every language (document ids
    hash the corpus path, so a fixed seed would hold out different documents in each run)."""
    rows = pq.read_table(curated / "file", columns=["id", "language"]).to_pylist()
    languages = {r["language"] for r in rows}
    return next(seed for seed in range(1000)
                if {r["language"] for r in rows if is_held_out(r["id"], 0.5, seed)} == languages)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory written by the real stages (a few seconds of pretraining)."""
    base = tmp_path_factory.mktemp("report")
    run = base / "run"
    curate(CurateConfig(str(run / "curated"), [str(make_corpus(base / "corpus"))], workers=1, quiet=True))
    train_tokenizer_on_parquet(TokenizerTrainConfig(run / "curated", run / "tokenizer", vocab_size=512))
    tokenize(TokenizeConfig(run / "tokenizer", run / "tokens", curated=run / "curated", val_fraction=0.5,
                            seed=split_seed(run / "curated"), workers=1))
    index = TokenIndex(run / "tokens")
    sources = [s for s in index.sources if index.num_tokens(s, "train") > 64]
    mixture = "{ " + ", ".join(f'"{s}" = 1.0' for s in sources) + " }"
    config = base / "pretrain.toml"
    config.write_text(CONFIG.format(model=MICRO_MODEL_TABLE, tokens=run / "tokens", out=run / "pretrain",
                                    mixture=mixture))
    pretrain(load_pretrain_config(config, []))
    problems = [json.loads(line) for line in gzip.open(humaneval_path(), "rt")][:3]
    samples = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    samples += [{"task_id": p["task_id"], "completion": "    return None\n"} for p in problems]
    write(base / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    run_eval(EvalConfig(run / "eval", samples=str(base / "samples.jsonl"), k=[1, 2], workers=2, progress=False))
    write(run / "experiment" / "results.json", json.dumps(EXPERIMENT))
    write(run / "recipe.json", json.dumps({
        "config": {"curate": {"quality": {"high_quality_threshold": 90.0}}},
        "stages": {"curate": {"status": "done", "fingerprint": "a", "seconds": 1.5, "outputs": [str(run / "curated")],
                              "finished_at": "2026-01-01T00:00:00+00:00"},
                   "pretrain": {"status": "done", "fingerprint": "b", "seconds": 12.25,
                                "outputs": [str(run / "pretrain")], "finished_at": "2026-01-01T00:01:00+00:00"},
                   "eval": {"status": "started", "fingerprint": "c"}}}))
    return run


@pytest.fixture(scope="module")
def report(run_dir) -> Path:
    expert_usage(ExpertUsageConfig(run_dir, max_documents=8, max_tokens=128))
    return write_report(run_dir)


class PageParser(HTMLParser):
    """Sections, figures (with their images), the body's attributes, and anything loaded from outside."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, str] = {}
        self.figures: dict[str, dict] = {}
        self.body: dict = {}
        self.external: list[str] = []
        self._figure: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "section":
            self.sections[attrs["id"]] = attrs["data-ran"]
        elif tag == "figure" and "plot" in attrs.get("class", ""):
            self._figure = attrs["data-plot"]
            self.figures[self._figure] = {"rendered": attrs.get("data-rendered")}
        elif tag == "img" and self._figure:
            self.figures[self._figure]["src"] = attrs["src"]
        if tag in ("link", "iframe") or (tag == "script" and "src" in attrs):
            self.external.append(tag)
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http:", "https:", "//", "file:")):
                self.external.append(attrs[key])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None


def page(path: Path) -> PageParser:
    return PageParser(path.read_text(encoding="utf-8"))


def png_size(src: str) -> tuple[int, int]:
    assert src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size


# -- the full report -------------------------------------------------------------------------------
def test_every_section_ran_and_every_figure_is_an_inline_png(report):
    parsed = page(report)
    assert report.name == "report.html"
    assert parsed.sections == dict.fromkeys(SECTIONS, "true")
    expected = {"curation-funnel", "curation-by-language", "drops-by-language-and-reason", "quality-scores",
                "training-pretrain", "expert-load-pretrain", "expert-usage-by-language", "pass-at-k",
                "tasks-eval-python", "study-moe-vs-dense", "study-moe-vs-dense-expert-load", "study-curated-vs-raw"}
    assert set(parsed.figures) == expected
    assert int(parsed.body["data-figures-declared"]) == len(expected)
    for name, figure in parsed.figures.items():
        width, height = png_size(figure["src"])
        assert width > 200 and height > 100, name
    assert parsed.external == []  # self-contained: nothing fetched from anywhere


def test_the_page_reports_the_runs_own_numbers(run_dir, report):
    text = report.read_text()
    stats = json.loads((run_dir / "curated" / "stats.json").read_text())
    assert f"{stats['documents_in']:,} documents" in text
    assert "high-quality" in text and "Go" in text and "JavaScript" in text
    checkpoint = sorted((run_dir / "pretrain" / "checkpoints").iterdir())[-1]
    total, active = count_parameters(BailingMoeConfig.load(checkpoint))
    assert f">{total:,}<" in text and f">{active:,}<" in text
    tokens = read_metrics(run_dir / "pretrain" / "metrics.jsonl")[-1]["tokens"]
    assert f">{tokens:,}<" in text  # tokens seen
    assert ">50.00<" in text and ">100.00<" in text  # pass@1 and pass@2 of 3 right + 3 wrong samples
    assert ">12.2<" in text or ">12.3<" in text  # a recipe stage's seconds
    assert ">started<" in text  # an unfinished stage
    assert "(threshold 90, recipe.json)" in text
    moe = statistics.mean([4.0, 4.2]), statistics.stdev([4.0, 4.2])
    half = scipy_stats.t.ppf(0.975, 1) * moe[1] / math.sqrt(2)
    assert f"{moe[0]:.4f} ± {moe[1]:.4f} [{moe[0] - half:.4f}, {moe[0] + half:.4f}]" in text
    assert "4.2500 (1 seed)" in text
    # The paired difference (moe minus dense: -0.5 and -0.4) and what the model card concludes from it: with two
    # seeds its interval still spans 0, so the card claims nothing either way.
    spread = scipy_stats.t.ppf(0.975, 1) * statistics.stdev([-0.5, -0.4]) / math.sqrt(2)
    assert f"-0.4500 [{-0.45 - spread:+.4f}, {-0.45 + spread:+.4f}] (2/2)" in text
    card = text[text.index('id="model-card"'):text.index('id="experiment"')]
    assert "moe vs dense" in card and "not supported either way" in card and "4,096 tokens per run" in card


def test_the_model_card_claims_a_difference_only_where_the_seeds_resolve_it():
    from lingcoder.report.sections import study_findings

    runs = [{"arm": arm, "seed": seed, "total_params": 67232, "val_loss": loss}
            for arm, losses in [("k2", [4.5, 4.62, 4.68]), ("k1", [4.0, 4.1, 4.2]), ("k4", [4.9, 4.9, 5.0]),
                                ("k8", [4.0, 4.9, 4.6])]
            for seed, loss in enumerate(losses)]
    entry = {**study_entry("inference-k", ["val_loss"], "k2", runs), "seeds": [0, 1, 2]}
    claims = {row[1]: row[4] for row in study_findings({"inference-k": entry})}
    assert claims == {
        "k1 vs k2": "k1 better than k2 at this scale (k1 better in 3 of 3 seeds)",
        "k4 vs k2": "k4 worse than k2 at this scale (k4 better in 0 of 3 seeds)",
        "k8 vs k2": "not supported either way: the 95% interval of the difference includes 0 over 3 seed(s)",
    }


def test_pretraining_records_each_experts_share_of_each_moe_layer(run_dir):
    train = [r for r in read_metrics(run_dir / "pretrain" / "metrics.jsonl") if r["kind"] == "train"]
    assert len(train) == 8
    for record in train:
        share_LE = np.asarray(record["expert_load"])
        assert share_LE.shape == (2, 8)
        np.testing.assert_allclose(share_LE.sum(axis=1), 1.0, atol=1e-3)
        np.testing.assert_allclose(share_LE.max(axis=1) * 8, record["expert_load_max_over_mean"], atol=2e-3)


def test_expert_usage_counts_every_held_out_token_k_times_and_is_cached(run_dir, report, monkeypatch):
    usage = json.loads((run_dir / "expert_usage.json").read_text())
    index = TokenIndex(run_dir / "tokens").data
    rows = pq.read_table(run_dir / "curated" / "file", columns=["id", "language"]).to_pylist()
    held_out = {r["language"] for r in rows
                if is_held_out(r["id"], index["val_fraction"], index["seed"])}
    assert set(usage["languages"]) == held_out and {"Python", "JavaScript", "Go", "Shell"} <= held_out
    assert "held out by the tokens/ validation split" in usage["selection"]
    for lang, entry in usage["languages"].items():
        assert 1 <= entry["documents"] <= 8
        assert 0 < entry["tokens"] <= 128 * entry["documents"]
        for counts_E in entry["tokens_per_expert"]:  # dropless top-2: each token reaches two experts
            assert sum(counts_E) == 2 * entry["tokens"], lang

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(expert_usage_module, "expert_usage_by_language", must_not_run)
    checkpoint = sorted((run_dir / "pretrain" / "checkpoints").iterdir())[-1]
    assert cached_expert_usage(run_dir, checkpoint, max_documents=8, max_tokens=128) == usage
    with pytest.raises(AssertionError, match="cache should have answered"):  # other settings: computed again
        cached_expert_usage(run_dir, checkpoint, max_documents=4, max_tokens=128)


NO_TORCH = """
import json, sys
from lingcoder.report import write_report
write_report(sys.argv[1], sys.argv[2])
print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))))
"""


def test_the_full_report_is_built_without_importing_torch(run_dir, report, tmp_path):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(run_dir), str(tmp_path / "r.html")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []
    parsed = page(tmp_path / "r.html")
    assert parsed.sections == dict.fromkeys(SECTIONS, "true") and "expert-usage-by-language" in parsed.figures


def test_expert_usage_is_read_from_its_json_which_the_report_never_writes(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("report.html"))
    (run / "expert_usage.json").unlink()
    parsed = page(write_report(run))
    assert parsed.sections["expert-usage"] == "false" and not (run / "expert_usage.json").exists()
    assert "no expert_usage.json in this run directory" in (run / "report.html").read_text()

    shutil.copy(run_dir / "expert_usage.json", run / "expert_usage.json")
    assert page(write_report(run)).sections["expert-usage"] == "true"
    assert "computed from another checkpoint" not in (run / "report.html").read_text()
    weights = sorted((run / "pretrain" / "checkpoints").glob("*/model*.safetensors"))[-1]  # the final one's
    weights.write_bytes(weights.read_bytes())  # rewritten weights: the counts no longer describe them
    write_report(run)
    assert "computed from another checkpoint than the final one" in (run / "report.html").read_text()


def test_expert_usage_says_why_there_is_nothing_to_count(run_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(LingcoderError, match="no complete checkpoint under pretrain/"):
        expert_usage(ExpertUsageConfig(tmp_path))
    shutil.copytree(run_dir / "pretrain", tmp_path / "pretrain")
    with pytest.raises(LingcoderError, match=r"no curated file-level documents"):
        expert_usage(ExpertUsageConfig(tmp_path))
    code, err = lingcoder(monkeypatch, capsys, "expert-usage", str(tmp_path))
    assert code == 2 and "nothing to count" in err and "Traceback" not in err


def test_cli_computes_expert_usage(run_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    for part in ("curated", "tokens", "pretrain"):
        shutil.copytree(run_dir / part, run / part)
    code, err = lingcoder(monkeypatch, capsys, "expert-usage", str(run), "--documents", "2", "--tokens", "32")
    assert code == 0, err
    assert f"expert usage -> {run / 'expert_usage.json'}" in err
    usage = json.loads((run / "expert_usage.json").read_text())
    assert usage["key"]["max_documents"] == 2 and usage["key"]["max_tokens"] == 32
    assert all(1 <= entry["documents"] <= 2 and entry["tokens"] <= 64 for entry in usage["languages"].values())


# -- partial and malformed run directories ---------------------------------------------------------
def test_an_empty_run_directory_gives_a_page_of_not_run_notes(tmp_path):
    parsed = page(write_report(tmp_path))
    assert parsed.sections == dict.fromkeys(SECTIONS, "false")
    assert parsed.figures == {} and parsed.body["data-figures-declared"] == "0"
    assert (tmp_path / "report.html").read_text().count("Not run:") == len(SECTIONS)


def test_each_stage_is_optional(run_dir, tmp_path):
    curated_only = tmp_path / "curated_only"
    shutil.copytree(run_dir / "curated", curated_only / "curated")
    parsed = page(write_report(curated_only, tmp_path / "elsewhere" / "page.html"))
    assert (tmp_path / "elsewhere" / "page.html").is_file() and not (curated_only / "report.html").exists()
    assert {s for s, ran in parsed.sections.items() if ran == "true"} == {"curation"}

    older = tmp_path / "older"  # a run from before per-expert loads were recorded; no checkpoint kept
    records = [json.loads(line) for line in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    write(older / "pretrain" / "metrics.jsonl",
          "".join(json.dumps({k: v for k, v in r.items() if k != "expert_load"}) + "\n" for r in records))
    parsed = page(write_report(older))
    assert {s for s, ran in parsed.sections.items() if ran == "true"} == {"training", "expert-load", "model-card"}
    assert set(parsed.figures) == {"training-pretrain", "expert-load-pretrain"}
    assert "predates per-expert load records" in (older / "report.html").read_text()


def test_a_long_run_is_drawn_from_evenly_spaced_records(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for step in range(1, 1001):
        share_LE = rng.dirichlet(np.ones(4), size=3)
        records.append({"kind": "train", "step": step, "phase": "stage1" if step <= 600 else "anneal",
                        "tokens": 64 * step, "lr": 1e-3, "lm_loss": 5.0 - step / 1000,
                        "expert_load": share_LE.round(5).tolist()})
    write(tmp_path / "pretrain" / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    parsed = page(write_report(tmp_path))
    assert set(parsed.figures) == {"training-pretrain", "expert-load-pretrain"}
    kept = subsample(records)
    assert len(kept) == 300 and kept[0]["step"] == 1 and kept[-1]["step"] == 1000
    assert np.diff([r["step"] for r in kept]).max() <= 4


MALFORMED = [
    ("curated/stats.json", "{not json", "curated/stats.json: not valid JSON"),
    ("curated/stats.json", '{"documents_in": 3}', "curated/stats.json: missing bytes_in"),
    ("curated/file/high/00000.parquet", "PAR1 not parquet", "00000.parquet: unreadable Parquet"),
    ("pretrain/metrics.jsonl", '{"kind": "train", "step": 1}\n{"kind": "tra', "pretrain/metrics.jsonl:2: not valid"),
    ("pretrain/metrics.jsonl", '{"kind": "train", "step": 1, "expert_load": [[0.5, 0.5], [1.0]]}\n',
     "`expert_load` changes shape"),
    ("pretrain/metrics.jsonl", '{"kind": "train", "step": [1]}\n', "pretrain/metrics.jsonl: not a metrics file"),
    ("eval/summary.json", '{"benchmark": "humaneval"}', "eval/summary.json: missing k, pass_at_k, per_language"),
    ("experiment/results.json", json.dumps({"s": {**study_entry("s", ["val_loss"], "", []), "runs": [{"arm": "a"}]}}),
     "experiment/results.json [s].runs[0]: missing seed, val_curve, val_loss"),
    ("recipe.json", "[1, 2]", "recipe.json: expected a JSON object"),
]


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(LingcoderError, match="no such run directory"):
        write_report(tmp_path / "nope")
    with pytest.raises(LingcoderError, match="max_documents and max_tokens must be >= 1"):
        expert_usage(ExpertUsageConfig(tmp_path, max_documents=0))


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED)
def test_a_malformed_file_is_a_clear_error_naming_it(tmp_path, name, content, message):
    stats = {"documents_in": 0, "bytes_in": 0, "kept": {"documents": 0, "bytes": 0},
             "dropped": {"documents": 0, "bytes": 0}, "unaccounted": 0, "high_quality": 0, "low_quality": 0,
             "by_step": {}, "by_language": {}}
    if name.startswith("curated/file"):
        write(tmp_path / "curated" / "stats.json", json.dumps(stats))
    write(tmp_path / name, content)
    with pytest.raises(LingcoderError, match=message.replace("[", r"\[").replace("]", r"\]")):
        write_report(tmp_path)


# -- the command line ------------------------------------------------------------------------------
def lingcoder(monkeypatch, capsys, *args) -> tuple[int, str]:
    """`lingcoder ARGS` through the CLI's entry point, in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["lingcoder", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_cli_writes_the_report_and_reports_bad_input_in_one_line(run_dir, tmp_path, monkeypatch, capsys):
    shutil.copytree(run_dir / "experiment", tmp_path / "run" / "experiment")
    code, err = lingcoder(monkeypatch, capsys, "report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    assert f"report -> {tmp_path / 'r.html'}" in err
    assert set(page(tmp_path / "r.html").figures) == {"study-moe-vs-dense", "study-moe-vs-dense-expert-load",
                                                      "study-curated-vs-raw"}
    write(tmp_path / "bad" / "eval" / "summary.json", "[]")
    code, err = lingcoder(monkeypatch, capsys, "report", str(tmp_path / "bad"))
    assert code == 2 and "summary.json: expected a JSON object" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- a real browser ------------------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's `chromium` with apt-get)")
    return found


def rendered_dom(binary: str, html_file: Path) -> PageParser:
    """The page's DOM after its load event, as headless chromium leaves it."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                                 html_file.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return PageParser(result.stdout)


def test_chromium_renders_every_figure_the_page_declares(report):
    dom = rendered_dom(chromium(), report)
    declared = int(dom.body["data-figures-declared"])
    assert declared == len(page(report).figures) > 0
    assert {name: f["rendered"] for name, f in dom.figures.items()} == dict.fromkeys(dom.figures, "true")
    assert dom.body["data-figures-rendered"] == str(declared)


def test_the_render_check_catches_an_image_that_does_not_decode(tmp_path):
    binary = chromium()
    section = Section("s", "a section")
    section.parts.append(figure_html("good", tiny_png(), "a valid image"))
    section.parts.append(figure_html("broken", b"\x89PNG not really", "an image that cannot decode"))
    (tmp_path / "p.html").write_text(render_page("t", "s", [section]))
    dom = rendered_dom(binary, tmp_path / "p.html")
    assert {name: f["rendered"] for name, f in dom.figures.items()} == {"good": "true", "broken": "false"}
    assert dom.body["data-figures-declared"] == "2" and dom.body["data-figures-rendered"] == "1"


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), "white").save(buffer, format="PNG")
    return buffer.getvalue()
