"""A study's statistics over seeds (torch-free): per arm the mean, sample standard deviation and a
95% Student-t interval for the mean; per arm against the baseline the paired difference seed by
seed (arm minus baseline) with its own 95% t interval and how many seeds the arm won.

The t interval (mean +- t(0.975, n-1) * sd / sqrt(n)) assumes roughly normal seed-to-seed noise;
with 5 seeds it is wide on purpose. Pairing removes what a seed shares across arms (the data order
and, for inference arms, the trained model), so the difference is tighter than the two arms' spreads.
"""

from __future__ import annotations

import math
import statistics

from scipy import stats as scipy_stats

from lingcoder.study import lower_is_better

INTERVAL = "95% Student-t interval for the mean over seeds"


def summarize(values: list[float]) -> dict:
    """{"n", "mean", "std", "low", "high"}; std, low and high are None for a single value."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "low": None, "high": None}
    mean = statistics.fmean(values)
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "low": None, "high": None}
    std = statistics.stdev(values)
    half = float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def paired_difference(arm: dict[int, float], baseline: dict[int, float], metric: str) -> dict:
    """The arm minus the baseline over the seeds both have: summarize() of the differences, plus
    `wins` (seeds where the arm is better) and `verdict` (better / worse / unresolved at 95%)."""
    seeds = sorted(set(arm) & set(baseline))
    differences = [arm[s] - baseline[s] for s in seeds]
    summary = summarize(differences)
    lower = lower_is_better(metric)
    summary["wins"] = sum((d < 0) if lower else (d > 0) for d in differences)
    summary["verdict"] = verdict(summary, lower)
    return summary


def verdict(difference: dict, lower_is_better_: bool) -> str:
    """"better" or "worse" when the 95% interval of the difference excludes 0, else "unresolved"."""
    low, high = difference["low"], difference["high"]
    if low is None or high is None or low <= 0 <= high:
        return "unresolved"
    below = high < 0
    return "better" if below == lower_is_better_ else "worse"


def study_statistics(runs: list[dict], arms: list[str], metrics: list[str], baseline: str) -> dict:
    """{"interval", "arms": {arm: {metric: summary}}, "paired": {arm: {metric: difference}}} from the runs
    ({"arm", "seed", metric: value, ...}); a run without a metric's value is left out of that metric."""
    by_arm = {arm: {m: {r["seed"]: r[m] for r in runs if r["arm"] == arm and r.get(m) is not None}
                    for m in metrics} for arm in arms}
    result = {"interval": INTERVAL,
              "arms": {arm: {m: summarize(list(by_arm[arm][m].values())) for m in metrics} for arm in arms},
              "paired": {}}
    if baseline:
        for arm in arms:
            if arm != baseline:
                result["paired"][arm] = {m: paired_difference(by_arm[arm][m], by_arm[baseline][m], m)
                                         for m in metrics}
    return result


def format_summary(s: dict) -> str:
    if s["mean"] is None:
        return "-"
    if s["std"] is None:
        return f"{s['mean']:.4f} (1 seed)"
    return f"{s['mean']:.4f} ± {s['std']:.4f} [{s['low']:.4f}, {s['high']:.4f}]"


def format_difference(d: dict) -> str:
    if d["mean"] is None:
        return "-"
    if d["low"] is None:
        return f"{d['mean']:+.4f} (1 seed)"
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] ({d['wins']}/{d['n']})"
