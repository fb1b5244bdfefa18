"""The report's plots: matplotlib figures drawn from parsed run files, saved as PNG bytes.

Figures are `matplotlib.figure.Figure` objects (no pyplot: no global state, no display needed).
Tensors of numbers carry their shape in their names: R records (steps), L MoE layers, E experts,
N languages.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from lingcoder.data.funnel import STEP_ORDER

DPI = 100
WIDTH = 11.0  # inches; the page is about 1,100 px wide
MAX_HEATMAP_COLUMNS = 300  # logged steps drawn at most in a heatmap (evenly spaced)
STEP_COLORS = {"in": "#4c72b0", "kept": "#55a868", **{s: c for s, c in zip(
    STEP_ORDER, ["#c44e52", "#dd8452", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"], strict=True)}}
TRAIN_LOSS_KEYS = ("lm_loss", "loss", "sft_loss", "dpo_loss")


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# -- curation ------------------------------------------------------------------------------------
def curation_funnel(stats: dict, kept: list[dict]) -> Figure:
    """Documents and bytes: in, dropped per step and reason (pipeline order), kept high and low."""
    rows = [("documents in", stats["documents_in"], stats["bytes_in"], "in")]
    for step, reasons in stats["by_step"].items():
        if step == "repo_sample":  # repository samples, not files: reported apart
            continue
        for reason, cell in reasons.items():
            rows.append((f"{step}: {reason}", cell["documents"], cell["bytes"], step))
    for quality in ("high", "low"):
        sizes = [r["size_bytes"] for r in kept if r["quality"] == quality]
        rows.append((f"kept, {quality} quality", stats[f"{quality}_quality"], sum(sizes), "kept"))
    fig = Figure(layout="constrained", figsize=(WIDTH, 1.2 + 0.32 * len(rows)))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    colors = [STEP_COLORS.get(r[3], "#8c8c8c") for r in rows]
    for ax, column, title, fmt in ((axes[0], 1, "documents", lambda v: f"{v:,}"),
                                   (axes[1], 2, "bytes", human_bytes)):
        values = [r[column] for r in rows]
        ax.barh(y, values, color=colors)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_title(title)
        for yi, v in zip(y, values, strict=True):
            ax.text(max(v, 1), yi, " " + fmt(v), va="center", fontsize=8)
        ax.set_xlim(0, max(max(values), 1) * 30)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [r[0] for r in rows], fontsize=9)
    fig.suptitle("Curation funnel: documents in, dropped per step and reason, kept (log scale)")
    return fig


def group_languages(names: list[str], weights: dict[str, float], top: int) -> dict[str, str]:
    """language -> the row it is drawn in: the `top` heaviest keep their name, the rest are 'other'."""
    ranked = sorted(names, key=lambda n: (-weights.get(n, 0), n))
    return {n: (n if i < top else "other") for i, n in enumerate(ranked)}


def curation_by_language(kept: list[dict], dropped: list[dict], top: int = 15) -> Figure:
    """Per language, stacked: kept high, kept low, dropped at each step (documents and bytes)."""
    files = kept + [r for r in dropped if r["step"] != "repo_sample"]
    weights: dict[str, float] = {}
    for r in files:
        weights[r["language"]] = weights.get(r["language"], 0) + 1
    row_of = group_languages(list(weights), weights, top)
    languages = list(dict.fromkeys(row_of[n] for n in sorted(weights, key=lambda n: (-weights[n], n))))
    segments = ["kept, high", "kept, low"] + [s for s in STEP_ORDER if any(r.get("step") == s for r in files)]
    docs_SN = np.zeros((len(segments), len(languages)))
    bytes_SN = np.zeros_like(docs_SN)
    for r in files:
        segment = f"kept, {r['quality']}" if "quality" in r else r["step"]
        s, n = segments.index(segment), languages.index(row_of[r["language"]])
        docs_SN[s, n] += 1
        bytes_SN[s, n] += r["size_bytes"]
    fig = Figure(layout="constrained", figsize=(WIDTH, 1.4 + 0.3 * len(languages)))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(languages))[::-1]
    colors = ["#55a868", "#a6d9b0"] + [STEP_COLORS[s] for s in segments[2:]]
    for ax, values_SN, title in ((axes[0], docs_SN, "documents"), (axes[1], bytes_SN / 2**20, "MiB")):
        left = np.zeros(len(languages))
        for s, segment in enumerate(segments):
            label = segment if s < 2 else f"dropped: {segment}"
            ax.barh(y, values_SN[s], left=left, color=colors[s], label=label)
            left += values_SN[s]
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, languages, fontsize=9)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Per language: kept (high / low quality) and dropped at each step")
    return fig


def drops_language_by_reason(dropped: list[dict], top: int = 15) -> Figure:
    """Heatmaps language x drop reason: documents and bytes dropped (numbers in the cells)."""
    files = [r for r in dropped if r["step"] != "repo_sample"]
    weights: dict[str, float] = {}
    for r in files:
        weights[r["language"]] = weights.get(r["language"], 0) + 1
    row_of = group_languages(list(weights), weights, top)
    languages = list(dict.fromkeys(row_of[n] for n in sorted(weights, key=lambda n: (-weights[n], n))))
    order = {s: i for i, s in enumerate(STEP_ORDER)}
    reasons = sorted({(r["step"], r["reason"]) for r in files}, key=lambda sr: (order.get(sr[0], 99), sr[1]))
    docs_NR = np.zeros((len(languages), len(reasons)))
    bytes_NR = np.zeros_like(docs_NR)
    for r in files:
        n, c = languages.index(row_of[r["language"]]), reasons.index((r["step"], r["reason"]))
        docs_NR[n, c] += 1
        bytes_NR[n, c] += r["size_bytes"]
    fig = Figure(layout="constrained", figsize=(WIDTH, 2.0 + 0.7 * len(languages)))
    axes = fig.subplots(2, 1)
    for ax, values_NR, title, fmt in ((axes[0], docs_NR, "documents dropped", lambda v: f"{v:,.0f}"),
                                      (axes[1], bytes_NR, "bytes dropped", human_bytes)):
        shown = np.where(values_NR > 0, values_NR, np.nan)
        vmax = max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0, 1.0)
        ax.imshow(shown, aspect="auto", cmap="Reds", norm=LogNorm(vmin=0.5, vmax=vmax * 1.5))
        for (n, c), v in np.ndenumerate(values_NR):
            if v > 0:
                ax.text(c, n, fmt(v), ha="center", va="center", fontsize=7)
        ax.set_yticks(range(len(languages)), languages, fontsize=8)
        ax.set_xticks(range(len(reasons)), [f"{s}: {r}" for s, r in reasons], rotation=35, ha="right",
                      fontsize=8)
        ax.set_title(title)
    fig.suptitle("Dropped per reason and language")
    return fig


def quality_histogram(kept: list[dict], threshold: float, threshold_source: str) -> Figure:
    """Quality scores of the kept file-level samples, high and low stacked, the threshold marked."""
    bins = np.linspace(0, 100, 51)
    high = [r["score"] for r in kept if r["quality"] == "high"]
    low = [r["score"] for r in kept if r["quality"] == "low"]
    fig = Figure(layout="constrained", figsize=(WIDTH, 3.6))
    ax = fig.subplots()
    ax.hist([low, high], bins=bins, stacked=True, color=["#dd8452", "#55a868"],
            label=[f"low quality ({len(low):,})", f"high quality ({len(high):,})"])
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2)
    ax.text(threshold, ax.get_ylim()[1] * 0.95, f" high-quality threshold {threshold:g} ({threshold_source})",
            va="top", fontsize=9)
    ax.set_xlabel("quality score (0-100)")
    ax.set_ylabel("file-level samples")
    ax.legend(loc="upper left")
    ax.set_title("Quality-score distribution of the kept files")
    return fig


# -- training ------------------------------------------------------------------------------------
def train_loss_key(train: list[dict]) -> str | None:
    for key in TRAIN_LOSS_KEYS:
        if any(isinstance(r.get(key), int | float) for r in train):
            return key
    return None


def phase_spans(train: list[dict]) -> list[tuple[str, int, int]]:
    """(phase, first step, last step) of each run of consecutive train records in one phase."""
    spans: list[tuple[str, int, int]] = []
    for r in train:
        phase = r.get("phase")
        if phase is None:
            continue
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], r["step"])
        else:
            spans.append((phase, r["step"], r["step"]))
    return spans


def training_curves(records: list[dict], title: str) -> Figure:
    """Train and validation loss against steps, phases shaded and named, the LR on a second axis."""
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val" and isinstance(r.get("val_loss"), int | float)]
    fig = Figure(layout="constrained", figsize=(WIDTH, 4.2))
    ax = fig.subplots()
    key = train_loss_key(train)
    if key:
        points = [(r["step"], r[key]) for r in train if isinstance(r.get(key), int | float)]
        ax.plot(*zip(*points, strict=True), color="#4c72b0", linewidth=1.2, label=f"train {key}")
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", color="#c44e52", markersize=4,
                label="validation loss")
        sources = sorted({s for r in val for s in r.get("val_loss_by_source", {})})
        for source in sources if len(sources) > 1 else []:
            points = [(r["step"], r["val_loss_by_source"][source]) for r in val
                      if source in r.get("val_loss_by_source", {})]
            ax.plot(*zip(*points, strict=True), "--", linewidth=0.9, alpha=0.8, label=f"validation: {source}")
    for i, (phase, first, last) in enumerate(phase_spans(train)):
        ax.axvspan(first - 0.5, last + 0.5, color=("#e8e8f4" if i % 2 == 0 else "#f4ece4"), zorder=0)
        ax.text((first + last) / 2, 1.01, phase, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    lr = [(r["step"], r["lr"]) for r in train if isinstance(r.get("lr"), int | float)]
    if lr:
        ax_lr = ax.twinx()
        ax_lr.plot(*zip(*lr, strict=True), color="#8c8c8c", linewidth=1.0, label="learning rate")
        ax_lr.set_ylabel("learning rate")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        more_handles, more_labels = ax_lr.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize=8, loc="upper right")
    ax.set_title(title, pad=18)
    return fig


# -- experts -------------------------------------------------------------------------------------
def subsample(records: list, most: int = MAX_HEATMAP_COLUMNS) -> list:
    """At most `most` of `records`, evenly spaced, first and last included."""
    if len(records) <= most:
        return records
    return [records[i] for i in np.unique(np.linspace(0, len(records) - 1, most).round().astype(int))]


def small_multiples(count: int, height: float, columns: int = 4) -> tuple[Figure, list]:
    columns = min(count, columns)
    rows = math.ceil(count / columns)
    fig = Figure(layout="constrained", figsize=(WIDTH, 0.9 + height * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, list(axes[:count])


def expert_load_heatmaps(steps_R: list[int], share_RLE: np.ndarray, layer_labels: list[str]) -> Figure:
    """One heatmap per MoE layer: experts x steps, colour = the expert's share of routed tokens
    relative to a uniform share (1 = balanced)."""
    steps = np.asarray(steps_R)
    relative_RLE = share_RLE * share_RLE.shape[2]
    vmax = max(float(relative_RLE.max()), 2.0)
    fig, axes = small_multiples(len(layer_labels), 2.4)
    image = None
    for layer, (ax, label) in enumerate(zip(axes, layer_labels, strict=True)):
        edges = np.concatenate([steps[:1] - 0.5, (steps[1:] + steps[:-1]) / 2, steps[-1:] + 0.5])
        image = ax.pcolormesh(edges, np.arange(share_RLE.shape[2] + 1) - 0.5, relative_RLE[:, layer, :].T,
                              cmap="magma", vmin=0, vmax=vmax)
        ax.invert_yaxis()
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("expert", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=axes, shrink=0.9, label="load / uniform load")
    fig.suptitle("Expert load per MoE layer over training (1 = every expert gets an equal share)")
    return fig


def expert_load_max_over_mean(steps_R: list[int], ratio_RL: np.ndarray, layer_labels: list[str]) -> Figure:
    """The busiest expert's load over the mean load, one line per MoE layer (older runs' metric)."""
    fig = Figure(layout="constrained", figsize=(WIDTH, 3.6))
    ax = fig.subplots()
    for layer, label in enumerate(layer_labels):
        ax.plot(steps_R, ratio_RL[:, layer], linewidth=1.0, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.set_xlabel("step")
    ax.set_ylabel("max load / mean load")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=4)
    ax.set_title("Busiest expert's load over the mean, per MoE layer (per-expert loads not recorded)")
    return fig


def language_expert_heatmaps(languages: list[str], share_NLE: np.ndarray, layer_labels: list[str]) -> Figure:
    """One heatmap per MoE layer: languages x experts, colour = the language's share of routed tokens
    at that expert relative to a uniform share."""
    relative_NLE = share_NLE * share_NLE.shape[2]
    vmax = max(float(relative_NLE.max()), 2.0)
    fig, axes = small_multiples(len(layer_labels), 0.5 + 0.28 * len(languages), columns=2)
    image = None
    for layer, (ax, label) in enumerate(zip(axes, layer_labels, strict=True)):
        image = ax.imshow(relative_NLE[:, layer, :], aspect="auto", cmap="viridis", vmin=0, vmax=vmax,
                          interpolation="nearest")
        ax.set_yticks(range(len(languages)), languages, fontsize=8)
        ax.set_xlabel("expert", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.colorbar(image, ax=axes, shrink=0.9, label="share / uniform share")
    fig.suptitle("Which experts each language's tokens are routed to (final checkpoint, held-out documents)")
    return fig


# -- evaluation ----------------------------------------------------------------------------------
def pass_at_k_bars(scores: list[tuple[str, dict[str, float | None]]]) -> Figure:
    """Grouped bars: one group per (benchmark, language), one bar per pass@k."""
    ks = sorted({k for _, row in scores for k in row}, key=lambda k: int(k.split("@")[1]))
    fig = Figure(layout="constrained", figsize=(WIDTH, 3.6))
    ax = fig.subplots()
    width = min(0.8 / max(len(ks), 1), 0.2)
    x = np.arange(len(scores))
    for i, k in enumerate(ks):
        values = [row.get(k) for _, row in scores]
        heights = [100 * v if v is not None else 0 for v in values]
        bars = ax.bar(x + (i - (len(ks) - 1) / 2) * width, heights, width, label=k)
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), "n/a" if v is None else f"{100 * v:.1f}",
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [label for label, _ in scores], fontsize=9)
    ax.set_xlim(-0.6, len(scores) - 0.4)
    ax.set_ylim(0, 105)
    ax.set_ylabel("pass@k (%)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("pass@k per benchmark and language")
    return fig


def per_task_grid(tasks: list[tuple[str, int, int]], title: str, columns: int = 20) -> Figure:
    """One cell per task (in benchmark order), coloured by the share of its samples that passed."""
    columns = min(columns, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    grid = np.full((rows, columns), np.nan)
    for i, (_, passed, judged) in enumerate(tasks):
        grid[i // columns, i % columns] = passed / judged if judged else np.nan
    fig = Figure(layout="constrained", figsize=(max(5.0, min(WIDTH, 2.5 + 0.45 * columns)), 1.2 + 0.45 * rows))
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1)
    for i, (task_id, _, judged) in enumerate(tasks):
        ax.text(i % columns, i // columns, task_id.rsplit("/", 1)[-1] if judged else "skip", ha="center",
                va="center", fontsize=6)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, label="share of samples passed", fraction=0.03)
    ax.set_title(title)
    return fig


# -- studies -------------------------------------------------------------------------------------
STUDY_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
                "#64b5cd"]


def study_plot(entry: dict, stats: dict, with_curves: bool) -> Figure:
    """Loss vs tokens per arm (seeds thin, mean thick), each metric's per-arm mean with its interval and the
    seeds as dots, and each arm's paired difference from the baseline with its interval."""
    arms = [a["name"] for a in entry["arms"]]
    colors = {a: STUDY_COLORS[i % len(STUDY_COLORS)] for i, a in enumerate(arms)}
    metrics, baseline = entry["metrics"], entry["baseline"]
    panels = int(with_curves) + len(metrics) * (2 if baseline else 1)
    fig = Figure(layout="constrained", figsize=(WIDTH, 3.8 if panels <= 4 else 7.2))
    columns = min(panels, 4)
    axes = list(np.atleast_1d(fig.subplots(-(-panels // columns), columns)).ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    axes = axes[:panels]
    if with_curves:
        ax = axes.pop(0)
        for arm in arms:
            members = [r for r in entry["runs"] if r["arm"] == arm and r["val_curve"]]
            for r in members:
                ax.plot(*zip(*r["val_curve"], strict=True), color=colors[arm], alpha=0.3, linewidth=0.8)
            if members:
                common = sorted(set.intersection(*[{t for t, _ in r["val_curve"]} for r in members]))
                mean = [np.mean([dict(map(tuple, r["val_curve"]))[t] for r in members]) for t in common]
                ax.plot(common, mean, color=colors[arm], linewidth=2.0, label=f"{arm} ({len(members)})")
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("validation loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    positions = range(len(arms))
    for metric in metrics:
        ax = axes.pop(0)
        for i, arm in enumerate(arms):
            s = stats["arms"][arm][metric]
            if s["mean"] is None:
                continue
            error = None if s["low"] is None else [[s["mean"] - s["low"]], [s["high"] - s["mean"]]]
            ax.errorbar([i], [s["mean"]], yerr=error, fmt="o", color=colors[arm], capsize=4)
            seeds = [r[metric] for r in entry["runs"] if r["arm"] == arm and r.get(metric) is not None]
            ax.scatter([i + 0.15] * len(seeds), seeds, s=8, color=colors[arm], alpha=0.5)
        ax.set_xticks(list(positions), arms, fontsize=7, rotation=30 if len(arms) > 4 else 0)
        ax.set_title(f"{metric} (95% CI)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if baseline:
            ax = axes.pop(0)
            others = [a for a in arms if a != baseline]
            for i, arm in enumerate(others):
                d = stats["paired"][arm][metric]
                if d["mean"] is None:
                    continue
                error = None if d["low"] is None else [[d["mean"] - d["low"]], [d["high"] - d["mean"]]]
                ax.errorbar([d["mean"]], [i], xerr=error, fmt="o", color=colors[arm], capsize=4)
            ax.axvline(0, color="#444", linewidth=0.8)
            ax.set_yticks(range(len(others)), others, fontsize=7)
            ax.set_title(f"{metric}: arm minus {baseline}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{entry['study']}: {entry['tokens']:,} tokens per run")
    return fig


def study_expert_load(loads: dict[str, list]) -> Figure:
    """Per arm: experts' load shares over the uniform share, sorted descending, mean over layers and seeds."""
    fig = Figure(layout="constrained", figsize=(WIDTH * 0.6, 3.4))
    ax = fig.subplots()
    for i, (arm, runs) in enumerate(loads.items()):
        curves = []
        for load in runs:
            for layer in load:
                layer = np.asarray(layer, dtype=float)
                curves.append(np.sort(layer / layer.mean())[::-1])
        ranks = np.linspace(0, 1, len(curves[0]))
        ax.plot(ranks, np.mean(curves, axis=0), color=STUDY_COLORS[i % len(STUDY_COLORS)], marker=".",
                label=f"{arm} ({len(curves[0])} experts)")
    ax.axhline(1.0, color="#444", linewidth=0.8, linestyle="--")
    ax.set_xlabel("experts, busiest to idlest (fraction of the layer's experts)")
    ax.set_ylabel("load / uniform share")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig
