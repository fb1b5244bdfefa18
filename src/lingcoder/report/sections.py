"""The report's sections, one function per stage: each turns that stage's files in a run directory
into text, tables and figures, or a short "not run" note when its files are absent."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.execution import VERDICTS
from lingcoder.model import BailingMoeConfig, count_parameters
from lingcoder.report import plots
from lingcoder.report.page import Section, not_run, preformatted, table_html
from lingcoder.report.plots import human_bytes
from lingcoder.report.run_files import (
    load_curation,
    load_evals,
    load_experiment,
    load_expert_usage,
)
from lingcoder.runfiles import complete_checkpoints, final_checkpoint, no_expert_usage_reason, weights_signature
from lingcoder.study_stats import format_difference, format_summary, study_statistics


def relative(path: Path, run: Path) -> str:
    try:
        return str(path.resolve().relative_to(run.resolve()))
    except ValueError:
        return str(path)


# -- 1. curation ---------------------------------------------------------------------------------
def curation_section(run: Path, recipe: dict | None) -> Section:
    title = "1. Curation"
    curation = load_curation(run, recipe)
    if curation is None:
        return not_run("curation", title, "no curated/stats.json in this run directory.")
    stats, kept, dropped = curation.stats, curation.kept, curation.dropped
    section = Section("curation", title)
    section.text(f"{stats['documents_in']:,} documents ({human_bytes(stats['bytes_in'])}) in; "
                 f"{stats['kept']['documents']:,} kept ({human_bytes(stats['kept']['bytes'])}): "
                 f"{stats['high_quality']:,} high and {stats['low_quality']:,} low quality (threshold "
                 f"{curation.threshold:g}, {curation.threshold_source}); "
                 f"{stats['dropped']['documents']:,} dropped ({human_bytes(stats['dropped']['bytes'])}); "
                 f"{stats['unaccounted']} unaccounted; {stats.get('repo_samples', 0):,} repository samples "
                 f"({stats.get('repo_samples_dropped', 0):,} dropped)"
                 + (f"; {stats['seconds']:.1f} s." if "seconds" in stats else "."))
    section.figure("curation-funnel", plots.curation_funnel(stats, kept),
                   "Documents and bytes through the curation funnel: dropped per step and reason, kept.")
    if not kept and not dropped:
        section.note("No Parquet files under curated/file or curated/dropped: the per-language views are skipped.")
        return section
    section.figure("curation-by-language", plots.curation_by_language(kept, dropped),
                   "Per language: documents and bytes kept (high / low quality) and dropped at each step.")
    if any(r["step"] != "repo_sample" for r in dropped):
        section.figure("drops-by-language-and-reason", plots.drops_language_by_reason(dropped),
                       "Documents and bytes dropped per reason and language.")
    if kept:
        section.figure("quality-scores", plots.quality_histogram(kept, curation.threshold, curation.threshold_source),
                       "Quality scores of the kept file-level samples; the dashed line is the high-quality "
                       "threshold.")
    section.table(["language", "in", "kept", "high", "low", "dropped", "kept bytes", "dropped bytes"],
                  language_rows(kept, dropped), "Per language (file-level documents)")
    extras = []
    if stats.get("pii_redacted"):
        extras.append(table_html(["PII kind", "redactions in kept files"], list(stats["pii_redacted"].items())))
    if stats.get("decontamination"):
        extras.append(table_html(["benchmark item", "dropped documents"],
                                 [[item, ", ".join(docs)] for item, docs in stats["decontamination"].items()]))
    if extras:
        section.details("PII redactions and decontamination matches", "".join(extras))
    return section


def language_rows(kept: list[dict], dropped: list[dict]) -> list[list]:
    cells: dict = defaultdict(lambda: {"high": 0, "low": 0, "dropped": 0, "kept_bytes": 0, "dropped_bytes": 0})
    for r in kept:
        cells[r["language"]][r["quality"]] += 1
        cells[r["language"]]["kept_bytes"] += r["size_bytes"]
    for r in dropped:
        if r["step"] != "repo_sample":
            cells[r["language"]]["dropped"] += 1
            cells[r["language"]]["dropped_bytes"] += r["size_bytes"]
    rows = []
    for lang, c in cells.items():
        kept_docs = c["high"] + c["low"]
        rows.append([lang, kept_docs + c["dropped"], kept_docs, c["high"], c["low"], c["dropped"],
                     human_bytes(c["kept_bytes"]), human_bytes(c["dropped_bytes"])])
    return sorted(rows, key=lambda row: (-row[1], row[0]))


# -- 2. training ---------------------------------------------------------------------------------
def training_section(run: Path, metrics: dict[str, list[dict] | None]) -> Section:
    title = "2. Training: loss and learning rate"
    section = Section("training", title)
    summary = []
    for stage, records in metrics.items():
        if records is None:
            continue
        train = [r for r in records if r.get("kind") == "train"]
        val = [r for r in records if r.get("kind") == "val" and "val_loss" in r]
        if not train and not val:
            section.note(f"{stage}/metrics.jsonl holds no train or val records.")
            continue
        section.figure(f"training-{stage}", plots.training_curves(records, f"{stage}: loss and learning rate"),
                       f"{stage}: training and validation loss per step (phases shaded), learning rate on the "
                       "right axis.")
        key = plots.train_loss_key(train)
        rates = [r["tokens_per_s"] for r in train if isinstance(r.get("tokens_per_s"), int | float)]
        summary.append([stage, records[-1]["step"], records[-1].get("tokens", "-"),
                        f"{train[-1][key]:.4f}" if key else "-", f"{val[-1]['val_loss']:.4f}" if val else "-",
                        f"{min(r['val_loss'] for r in val):.4f}" if val else "-",
                        f"{statistics.mean(rates):,.0f}" if rates else "-"])
    if not summary:
        return not_run("training", title, "no pretrain/, sft/ or dpo/ metrics.jsonl in this run directory.")
    section.table(["stage", "steps", "tokens", "last train loss", "last val loss", "best val loss", "tokens/s"],
                  summary)
    return section


# -- 3. expert load ------------------------------------------------------------------------------
def moe_layer_labels(run: Path, stage: str, count: int) -> list[str]:
    """'layer N' for the stage's MoE layers (from its checkpoint's config), else 'MoE layer i'."""
    found = complete_checkpoints(run / stage / "checkpoints")
    if found:
        config = BailingMoeConfig.load(found[-1])
        layers = [i for i in range(config.num_hidden_layers) if config.is_moe_layer(i)]
        if len(layers) == count:
            return [f"layer {i}" for i in layers]
    return [f"MoE layer {i}" for i in range(count)]


def expert_load_section(run: Path, metrics: dict[str, list[dict] | None]) -> Section:
    title = "3. Expert load over training"
    section = Section("expert-load", title)
    for stage, records in metrics.items():
        train = [r for r in records or [] if r.get("kind") == "train"]
        with_load = plots.subsample([r for r in train if "expert_load" in r])
        with_ratio = plots.subsample([r for r in train if "expert_load_max_over_mean" in r])
        path = run / stage / "metrics.jsonl"
        if with_load:
            share_RLE = rectangular([r["expert_load"] for r in with_load], path, "expert_load")
            labels = moe_layer_labels(run, stage, share_RLE.shape[1])
            section.figure(f"expert-load-{stage}",
                           plots.expert_load_heatmaps([r["step"] for r in with_load], share_RLE, labels),
                           f"{stage}: each expert's share of its layer's routed tokens, relative to a uniform share, "
                           "per logged step.")
        elif with_ratio:
            ratio_RL = rectangular([r["expert_load_max_over_mean"] for r in with_ratio], path,
                                   "expert_load_max_over_mean")
            labels = moe_layer_labels(run, stage, ratio_RL.shape[1])
            section.figure(f"expert-load-{stage}",
                           plots.expert_load_max_over_mean([r["step"] for r in with_ratio], ratio_RL, labels),
                           f"{stage}: this run predates per-expert load records; the busiest expert's load over "
                           "the mean is shown instead.")
        elif train:
            section.note(f"{stage}: no expert-load metrics (a dense model has no experts).")
    if not section.parts:
        return not_run("expert-load", title, "no training metrics in this run directory.")
    return section


def rectangular(values: list, path: Path, key: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except ValueError:
        raise LingcoderError(f"{path}: `{key}` changes shape between records") from None
    if array.ndim < 2 or 0 in array.shape:
        raise LingcoderError(f"{path}: `{key}` must hold one value (or list) per MoE layer")
    return array


# -- 4. experts per language ---------------------------------------------------------------------
def expert_usage_section(run: Path) -> Section:
    title = "4. Which experts each language uses"
    reason = no_expert_usage_reason(run)
    if reason:
        return not_run("expert-usage", title, reason)
    usage = load_expert_usage(run)
    if usage is None:
        return not_run("expert-usage", title, "no expert_usage.json in this run directory (`lingcoder expert-usage "
                                              "RUN` computes it from the final checkpoint).")
    section = Section("expert-usage", title)
    key = usage["key"] if isinstance(usage["key"], dict) else {}
    section.text(f"Checkpoint {usage['checkpoint']}; documents: {usage['selection']}, at most "
                 f"{key.get('max_documents', '?')} per language, first {key.get('max_tokens', '?')} tokens of each. "
                 "Read from expert_usage.json (written by `lingcoder expert-usage`).")
    checkpoint = final_checkpoint(run)
    if key.get("checkpoint") != relative(checkpoint, run) or key.get("weights") != weights_signature(checkpoint):
        section.note(f"expert_usage.json was computed from another checkpoint than the final one "
                     f"({relative(checkpoint, run)}): run `lingcoder expert-usage` again to bring it up to date.")
    languages = sorted((lang for lang, u in usage["languages"].items() if u["tokens"]),
                       key=lambda lang: -usage["languages"][lang]["tokens"])
    if not languages:
        section.note("No held-out curated documents to run the model on.")
        return section
    counts_NLE = np.asarray([usage["languages"][lang]["tokens_per_expert"] for lang in languages], dtype=float)
    share_NLE = counts_NLE / counts_NLE.sum(axis=-1, keepdims=True)
    labels = [f"layer {i}" for i in usage["moe_layers"]]
    section.figure("expert-usage-by-language", plots.language_expert_heatmaps(languages, share_NLE, labels),
                   "Share of each language's routed tokens that each expert receives, relative to a uniform "
                   "share (1 = as often as average), per MoE layer.")
    rows = []
    for n, lang in enumerate(languages):
        top = np.argsort(-share_NLE[n, -1])[:3]
        rows.append([lang, usage["languages"][lang]["documents"], usage["languages"][lang]["tokens"],
                     ", ".join(f"{e} ({100 * share_NLE[n, -1, e]:.0f}%)" for e in top)])
    section.table(["language", "documents", "tokens", f"top experts, {labels[-1]}"], rows)
    return section


# -- 5. evaluation -------------------------------------------------------------------------------
def evaluation_section(run: Path) -> Section:
    title = "5. Evaluation"
    evals = load_evals(run)
    if not evals:
        return not_run("evaluation", title, "no eval/summary.json in this run directory.")
    section = Section("evaluation", title)
    ks = sorted({int(k) for e in evals for k in e.summary["k"]})
    rows, scores = [], []
    for e in evals:
        name = relative(e.directory, run)
        generation = e.summary.get("generation")
        if generation:
            section.text(f"{name}: samples generated by the {generation.get('backend')} backend from "
                         f"{generation.get('model')} ({generation.get('mode', 'base')} mode).")
        for bench, languages in e.summary["pass_at_k"].items():
            for lang, values in languages.items():
                counts = e.summary["per_language"].get(lang, {})
                cells = [values.get(f"pass@{k}") for k in ks]
                rows.append([name, bench, lang, counts.get("tasks", "-"), counts.get("samples", "-"),
                             *["-" if v is None else f"{100 * v:.2f}" for v in cells],
                             *[counts.get(v, 0) for v in VERDICTS]])
                scores.append((f"{bench}\n{lang}", {f"pass@{k}": values.get(f"pass@{k}") for k in ks
                                                    if f"pass@{k}" in values}))
    section.table(["eval", "benchmark", "language", "tasks", "samples", *[f"pass@{k} (%)" for k in ks], *VERDICTS],
                  rows)
    pivot: dict[str, dict[str, float | None]] = {}
    for e in evals:
        for bench, languages in e.summary["pass_at_k"].items():
            for lang, values in languages.items():
                pivot.setdefault(bench, {})[lang] = values.get(f"pass@{ks[0]}")
    columns = sorted({lang for by_lang in pivot.values() for lang in by_lang})
    section.text(f"pass@{ks[0]} (%) per benchmark (rows) and language (columns), as in the paper's table:")
    section.table(["benchmark", *columns],
                  [[bench, *[("-" if by_lang[c] is None else f"{100 * by_lang[c]:.2f}") if c in by_lang else ""
                             for c in columns]] for bench, by_lang in pivot.items()])
    section.figure("pass-at-k", plots.pass_at_k_bars(scores), "pass@k per benchmark and language.")
    for e in evals:
        name = relative(e.directory, run)
        for lang, tasks in per_task(e.results).items():
            grid = [(task, sum(t["passed"] for t in rows_), sum(t["verdict"] != "skipped" for t in rows_))
                    for task, rows_ in tasks.items()]
            section.figure(f"tasks-{name}-{lang}", plots.per_task_grid(grid, f"{name} ({lang}): per task"),
                           f"{name}, {lang}: one cell per task, coloured by the share of its samples that passed.")
            table = [[task, len(rows_), sum(t["passed"] for t in rows_),
                      ", ".join(f"{v} {n}" for v, n in count_verdicts(rows_).items()),
                      next((t.get("error", "") for t in rows_ if t.get("error")), "")]
                     for task, rows_ in tasks.items()]
            section.details(f"{name}, {lang}: per-task results ({len(table)} tasks)",
                            table_html(["task", "samples", "passed", "verdicts", "first error"], table))
    return section


def per_task(results: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """language -> task_id -> its result rows, in file order."""
    grouped: dict[str, dict[str, list[dict]]] = {}
    for row in results:
        grouped.setdefault(row["language"], {}).setdefault(row["task_id"], []).append(row)
    return grouped


def count_verdicts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


# -- 6. model card -------------------------------------------------------------------------------
def model_card_section(run: Path, recipe: dict | None, metrics: dict[str, list[dict] | None]) -> Section:
    title = "6. Model card"
    checkpoint = final_checkpoint(run)
    seen = []
    for stage, records in metrics.items():
        if records and "tokens" in records[-1]:
            seen.append([stage, records[-1]["step"], records[-1]["tokens"]])
    findings = study_findings(load_experiment(run))
    if checkpoint is None and recipe is None and not seen and not findings:
        return not_run("model-card", title, "no checkpoint, training metrics, recipe.json or studies in this run "
                                            "directory.")
    section = Section("model-card", title)
    if findings:
        section.table(["study", "comparison", "metric", "difference [95% CI] (wins / seeds)", "what it supports",
                       "scale"], findings,
                      "What the studies (section 7) support: a claim holds at the scale it was measured at, and only "
                      "where the paired 95% interval excludes 0; nothing here speaks for larger models or budgets.")
    if checkpoint is not None:
        config = BailingMoeConfig.load(checkpoint)
        total, active = count_parameters(config)
        moe = sum(map(config.is_moe_layer, range(config.num_hidden_layers)))
        section.table(["", "final checkpoint"], [
            ["checkpoint", relative(checkpoint, run)],
            ["total parameters", total],
            ["activated parameters per token", active],
            ["layers (MoE)", f"{config.num_hidden_layers} ({moe} MoE)"],
            ["hidden / heads / kv heads / head dim", f"{config.hidden_size} / {config.num_attention_heads} / "
                                                     f"{config.num_key_value_heads} / {config.head_dim}"],
            ["experts (routed + shared, top-k)",
             f"{config.num_experts} + {config.num_shared_experts}, top-{config.num_experts_per_tok}"],
            ["expert width / dense width", f"{config.moe_intermediate_size} / {config.intermediate_size}"],
            ["vocabulary / context", f"{config.vocab_size} / {config.max_position_embeddings}"],
        ])
    if seen:
        section.table(["training stage", "steps", "tokens seen"], seen)
    stages = (recipe or {}).get("stages", {})
    if stages:
        rows = [[name, s.get("status", ""), f"{s['seconds']:,.1f}" if "seconds" in s else "-",
                 s.get("finished_at", "")] for name, s in stages.items()]
        rows.append(["total", "", f"{sum(s.get('seconds', 0) for s in stages.values()):,.1f}", ""])
        section.table(["recipe stage", "status", "seconds", "finished at"], rows)
    if checkpoint is not None:
        section.details("config.json", preformatted((checkpoint / "config.json").read_text()))
    if recipe is not None and "config" in recipe:
        section.details("recipe config", preformatted(json.dumps(recipe["config"], indent=2)))
    return section


# -- 7. studies ----------------------------------------------------------------------------------
def experiment_section(run: Path) -> Section:
    title = "7. Studies (lingcoder experiment)"
    results = load_experiment(run)
    if results is None:
        return not_run("experiment", title, "no experiment/results.json in this run directory.")
    section = Section("experiment", title)
    for key, entry in results.items():
        arms = [a["name"] for a in entry["arms"]]
        if not entry["runs"]:
            section.note(f"{key}: no runs recorded yet.")
            continue
        stats = study_statistics(entry["runs"], arms, entry["metrics"], entry["baseline"])
        section.text(f"{key}: {entry.get('description', '')}. {entry['tokens']:,} tokens ({entry['steps']:,} steps) "
                     f"per training run, seeds {', '.join(map(str, entry['seeds']))}; mean ± standard deviation "
                     f"[{stats['interval']}]" + (f"; paired differences are each arm minus {entry['baseline']}, "
                                                 "seed by seed." if entry["baseline"] else "."))
        header = ["arm", "settings", "seeds", "total params", "activated params"]
        for metric in entry["metrics"]:
            header.append(metric)
            if entry["baseline"]:
                header.append(f"{metric} minus {entry['baseline']} (wins / seeds)")
        rows = []
        for arm in entry["arms"]:
            members = [r for r in entry["runs"] if r["arm"] == arm["name"]]
            settings = ", ".join(arm.get("set") or []) or "-"
            if arm.get("data", "recipe") != "recipe":
                settings = f"data: {arm['data']}" + ("" if settings == "-" else f"; {settings}")
            row = [arm["name"], settings, len(members), members[0].get("total_params", "-") if members else "-",
                   members[0].get("activated_params", "-") if members else "-"]
            for metric in entry["metrics"]:
                row.append(format_summary(stats["arms"][arm["name"]][metric]))
                if entry["baseline"]:
                    paired = stats["paired"].get(arm["name"], {}).get(metric)
                    row.append(format_difference(paired) + f" {paired['verdict']}" if paired else "baseline")
            rows.append(row)
        section.table(header, rows)
        with_curves = entry["kind"] == "train" and any(r["val_curve"] for r in entry["runs"])
        section.figure(f"study-{key}", plots.study_plot(entry, stats, with_curves),
                       f"{key}: " + ("validation loss against tokens seen (thin: each seed, thick: the mean); " if
                                     with_curves else "") + "each metric's mean per arm with its 95% interval "
                       "(dots: seeds)" + ("; each arm minus the baseline, seed by seed, with its 95% interval (a "
                                          "bar clear of 0 is a difference these seeds resolve)." if entry["baseline"]
                                          else "."))
        loaded = [a for a in arms if any(r.get("expert_load") for r in entry["runs"] if r["arm"] == a)]
        if loaded:
            loads = {a: [r["expert_load"] for r in entry["runs"] if r["arm"] == a and r.get("expert_load")]
                     for a in loaded}
            section.figure(f"study-{key}-expert-load", plots.study_expert_load(loads),
                           f"{key}: expert load at the end of training per arm: each expert's share of its layer's "
                           "routed tokens over the uniform share, sorted, averaged over layers and seeds "
                           "(1 everywhere = perfectly balanced).")
            section.table(["arm", "experts", "busiest expert / mean (max over layers)", "router entropy / ln(experts)"],
                          [[a, len(loads[a][0][0]), f"{busiest_over_mean(loads[a]):.2f}",
                            router_entropy_share(entry["runs"], a, len(loads[a][0][0]))] for a in loaded],
                          "Last logged training step; means over seeds. Entropy near 1 means the router spreads "
                          "each token almost uniformly (it has not learned to choose).")
    if not section.parts:
        return not_run("experiment", title, "experiment/results.json holds no study.")
    return section


def busiest_over_mean(loads: list) -> float:
    """The busiest expert's share over the mean share, worst layer, averaged over seeds."""
    return float(np.mean([max(max(layer) / np.mean(layer) for layer in load) for load in loads]))


def router_entropy_share(runs: list[dict], arm: str, experts: int) -> str:
    values = [np.mean(r["router_entropy"]) for r in runs if r["arm"] == arm and r.get("router_entropy")]
    return f"{np.mean(values) / np.log(experts):.3f}" if values and experts > 1 else "-"


def study_findings(results: dict | None) -> list[list]:
    """For the model card: each arm against its study's baseline on the study's first metric, with what
    the seeds resolve and the scale they were run at, worded from the numbers."""
    rows = []
    for key, entry in (results or {}).items():
        if not entry["baseline"] or not entry["runs"]:
            continue
        arms = [a["name"] for a in entry["arms"]]
        metric = entry["metrics"][0]
        stats = study_statistics(entry["runs"], arms, [metric], entry["baseline"])
        first = entry["runs"][0]
        scale = (f"{entry['tokens']:,} tokens per run"
                 + (f", {first['total_params']:,} parameters ({entry['tokens'] / first['total_params']:.2f} tokens "
                    f"per parameter)" if first.get("total_params") else ""))
        for arm, by_metric in stats["paired"].items():
            d = by_metric[metric]
            if d["mean"] is None:
                continue
            if d["verdict"] == "unresolved":
                claim = (f"not supported either way: the 95% interval of the difference includes 0 "
                         f"over {d['n']} seed(s)")
            else:
                claim = (f"{arm} {d['verdict']} than {entry['baseline']} at this scale "
                         f"({arm} better in {d['wins']} of {d['n']} seeds)")
            rows.append([key, f"{arm} vs {entry['baseline']}", metric, format_difference(d), claim, scale])
    return rows

