"""Our verdicts equal the benchmarks' own graders' on the same fixtures: LiveCodeBench's
(nvidia-livecodebench's check_correctness) and BigCodeBench's (bigcodebench's untrusted_check), each
run in .venv-graders (built by .ci/graders-env) as a subprocess, on correct and broken solutions."""

import json
import subprocess
from pathlib import Path

import pytest

from lingcoder.evaluate.runner import evaluate_samples
from tests.suite_fixtures import BCB_ROWS, BCB_WRONG, LCB_ROWS, LCB_SOLUTIONS, write_jsonl

ENVIRONMENT = Path(__file__).resolve().parents[1] / ".venv-graders"
GRADERS = ENVIRONMENT / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not (ENVIRONMENT / ".graders-installed").exists(),  # written by .ci/graders-env once it is complete
    reason=".venv-graders is absent or incomplete: build it with .ci/graders-env (or `make graders`)",
)

# Runs in .venv-graders: one verdict (True = pass) per case, from the benchmark's own grader.
THEIR_GRADERS = """
import json, sys
verdicts = []
for case in json.load(open(sys.argv[1])):
    if case["grader"] == "livecodebench":
        from livecodebench.evaluation.compute_code_generation_metrics import check_correctness
        result, _ = check_correctness(case["sample"], case["code"], timeout=6, debug=False)
        verdicts.append(bool(result) and all(r is True for r in result))
    else:
        from bigcodebench.eval import untrusted_check
        status, _ = untrusted_check(case["code"], case["test"], case["entry_point"], max_as_limit=30 * 1024,
                                    max_data_limit=30 * 1024, max_stack_limit=10, min_time_limit=1, gt_time_limit=20)
        verdicts.append(status == "pass")
print(json.dumps(verdicts))
"""


def theirs(tmp_path, cases):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    done = subprocess.run([str(GRADERS), "-c", THEIR_GRADERS, str(path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(tmp_path, name, path, samples):
    samples_path = write_jsonl(tmp_path / f"{name}.jsonl", [{"task_id": t, "completion": c} for t, c in samples])
    evaluate_samples(samples_path, tmp_path / name, benchmark=name, benchmark_file=path, k=[1], progress=False)
    rows = [json.loads(line) for line in (tmp_path / name / "results.jsonl").read_text().splitlines()]
    return [row["passed"] for row in rows]


def _lcb_sample(row):
    from lingcoder.evaluate.suites.livecodebench import decode_tests

    cases = decode_tests(row["public_test_cases"], "public") + decode_tests(row["private_test_cases"], "private")
    func_name = json.loads(row["metadata"]).get("func_name")
    return {
        "input_output": json.dumps(
            {"inputs": [c["input"] for c in cases], "outputs": [c["output"] for c in cases], "fn_name": func_name}
        )
    }


def test_livecodebench_verdicts_equal_its_grader(tmp_path):
    path = write_jsonl(tmp_path / "test5.jsonl", LCB_ROWS)
    rows = {row["question_id"]: row for row in LCB_ROWS}
    solutions = [(task, code) for task, by in LCB_SOLUTIONS.items() for codes in by.values() for code in codes]
    mine = ours(tmp_path, "livecodebench", path, solutions)
    reference = theirs(
        tmp_path, [{"grader": "livecodebench", "sample": _lcb_sample(rows[t]), "code": c} for t, c in solutions]
    )
    assert mine == reference
    assert True in mine and False in mine


def test_bigcodebench_verdicts_equal_its_grader(tmp_path):
    row = BCB_ROWS[0]
    path = write_jsonl(tmp_path / "bigcodebench.jsonl", [row])
    completions = [row["canonical_solution"], *BCB_WRONG]
    mine = ours(tmp_path, "bigcodebench-complete", path, [(row["task_id"], c) for c in completions])
    reference = theirs(
        tmp_path,
        [
            {
                "grader": "bigcodebench",
                "code": row["complete_prompt"] + c,
                "test": row["test"],
                "entry_point": "task_func",
            }
            for c in completions
        ],
    )
    assert mine == reference == [True, False, False, False]
