"""Benchmark loaders read each published format from a local file (small fixtures written here)."""

import gzip
import json

import pytest

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import load_benchmark
from lingcoder.evaluate.execution import default_sandbox, run_program
from lingcoder.evaluate.languages import get_language, toolchain
from lingcoder.evaluate.prompts import instruct_messages
from lingcoder.evaluate.runner import evaluate_samples


def write_jsonl(path, rows, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


HUMANEVAL_PLUS = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'def add(a, b):\n    """Add."""\n',
        "entry_point": "add",
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    inputs = [[1, 2], [0, 0], [-5, 5]]\n    results = [3, 0, 0]\n"
        "    for inp, exp in zip(inputs, results):\n        assert candidate(*inp) == exp\n",
    }
]
MBPP_ORIGINAL = [
    {
        "task_id": 11,
        "text": "Write a function to double a number.",
        "code": "def double(x):\n    return 2 * x",
        "test_list": ["assert double(2) == 4", "assert double(0) == 0"],
        "test_setup_code": "",
        "challenge_test_list": [],
    }
]
MBPP_PLUS = [
    {
        "task_id": "Mbpp/11",
        "prompt": '"""\nWrite a function to double a number.\nassert double(2) == 4\n"""\n',
        "code": "def double(x):\n    return 2 * x",
        "test_imports": ["import math"],
        "test_list": ["assert double(2) == 4"],
        "test": "inputs = [[2], [0], [7]]\nresults = [4, 0, 14]\nfor i, o in zip(inputs, results):\n"
        "    assert double(*i) == o\n",
    }
]
MULTIPL_E = [
    {
        "name": "HumanEval_0_inc",
        "language": "js",
        "prompt": "function inc(x){\n",
        "tests": "const assert = require('node:assert');\n\nfunction test() {\n  let candidate = inc;\n"
        "  assert.deepEqual(candidate(1),2);\n}\n\ntest();",
        "stop_tokens": ["\nfunction ", "\n/*", "\n//", "\nconsole.log"],
    },
    {
        "name": "HumanEval_0_inc_py",
        "language": "py",
        "prompt": "def inc(x):\n",
        "tests": "def check(candidate):\n    assert candidate(1) == 2\n\n"
        "def test_check():\n    check(inc)\n\ntest_check()\n",
        "stop_tokens": ["\ndef"],
    },
]
MBXP = [
    {
        "task_id": "MBCPP/1",
        "language": "cpp",
        "prompt": "#include <bits/stdc++.h>\nusing namespace std;\n\nint twice(int x) {\n",
        "test": '\nint main() {\n    if (twice(2) != 4) { throw std::runtime_error("bad"); }\n}\n',
        "entry_point": "twice",
        "canonical_solution": "    return 2 * x;\n}",
    }
]


def test_humaneval_comes_from_the_package():
    bench = load_benchmark("humaneval")
    assert len(bench.problems) == 164
    problem = bench.problems["HumanEval/0"]
    assert problem.language == "python" and "check(has_close_elements)" in problem.tests


def test_humaneval_plus_file(tmp_path):
    path = write_jsonl(tmp_path / "HumanEvalPlus.jsonl.gz", HUMANEVAL_PLUS, gz=True)
    samples = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/0", "completion": "    return a + b\n"},
            {"task_id": "HumanEval/0", "completion": "    return a - b\n"},
        ],
    )
    summary = evaluate_samples(
        samples, tmp_path / "out", benchmark="humaneval+", benchmark_file=path, k=[1, 2], progress=False
    )
    assert summary["pass_at_k"] == {"humaneval+": {"python": {"pass@1": 0.5, "pass@2": 1.0}}}


def test_mbpp_original_and_plus(tmp_path):
    original = write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ORIGINAL)
    plus = write_jsonl(tmp_path / "MbppPlus.jsonl", MBPP_PLUS)
    samples = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": 11, "completion": "def double(x):\n    return x + x\n"},
            {"task_id": "Mbpp/11", "completion": "def double(x):\n    return 4\n"},
        ],
    )
    for name, path in (("mbpp", original), ("mbpp+", plus)):
        bench = load_benchmark(name, path)
        assert list(bench.problems) == ["Mbpp/11"] and bench.problems["Mbpp/11"].reference
        summary = evaluate_samples(
            samples, tmp_path / name, benchmark=name, benchmark_file=path, k=[1], progress=False
        )
        rows = [json.loads(x) for x in (tmp_path / name / "results.jsonl").read_text().splitlines()]
        # "return 4" passes MBPP's first test only by luck and fails the rest.
        assert [r["passed"] for r in rows] == [True, False]
        assert summary["pass_at_k"][name]["python"]["pass@1"] == 0.5


def test_multipl_e_and_mbxp_files(tmp_path):
    multipl = write_jsonl(tmp_path / "multipl.jsonl", MULTIPL_E)
    mbxp = write_jsonl(tmp_path / "mbxp.jsonl", MBXP)
    bench = load_benchmark("multipl-e", multipl)
    assert {p.language for p in bench.problems.values()} == {"javascript", "python"}
    assert bench.problems["HumanEval_0_inc"].stop[0] == "\nfunction "
    samples = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval_0_inc", "completion": "  return x + 1;\n}"},
            {"task_id": "HumanEval_0_inc_py", "completion": "    return x + 1\n"},
        ],
    )
    summary = evaluate_samples(
        samples, tmp_path / "m", benchmark="multipl-e", benchmark_file=multipl, k=[1], progress=False
    )
    node = toolchain(get_language("javascript"), default_sandbox())
    assert summary["pass_at_k"]["multipl-e"]["python"]["pass@1"] == 1.0
    if node.missing:
        assert summary["skipped"]["javascript"] == node.missing
        assert summary["pass_at_k"]["multipl-e"]["javascript"]["pass@1"] is None
    else:
        assert summary["pass_at_k"]["multipl-e"]["javascript"]["pass@1"] == 1.0
    problem = load_benchmark("mbxp", mbxp).problems["MBCPP/1"]
    if toolchain(get_language("cpp"), default_sandbox()).missing:
        pytest.skip("g++ missing")
    assert run_program("cpp", problem.solution(problem.reference), tests=problem.tests).status == "passed"
    assert run_program("cpp", problem.solution("    return x;\n}"), tests=problem.tests).status == "failed"


def test_missing_benchmark_file_says_how_to_get_it(tmp_path):
    with pytest.raises(LingcoderError, match="How to get it: .*evalplus/mbppplus"):
        load_benchmark("mbpp+", tmp_path / "nope.jsonl")
    with pytest.raises(LingcoderError, match="reads a local file"):
        load_benchmark("humaneval+")
    with pytest.raises(LingcoderError, match="unknown; did you mean spider"):
        load_benchmark("spyder")


def test_bad_benchmark_rows_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(MBPP_ORIGINAL[0]) + "\n{not json\n")
    with pytest.raises(LingcoderError, match=r"bad.jsonl:2: not valid JSON"):
        load_benchmark("mbpp", bad)
    bad.write_text(json.dumps({"task_id": 1, "text": "x"}) + "\n")
    with pytest.raises(LingcoderError, match=r"bad.jsonl:1: missing field\(s\) code, test_list"):
        load_benchmark("mbpp", bad)
    bad.write_text(json.dumps({**MULTIPL_E[0], "language": "cobol"}) + "\n")
    with pytest.raises(LingcoderError, match=r"bad.jsonl:1: language 'cobol'"):
        load_benchmark("multipl-e", bad)
    raw_evalplus = {k: v for k, v in HUMANEVAL_PLUS[0].items() if k != "test"} | {"plus_input": [[1, 2]]}
    bad.write_text(json.dumps(raw_evalplus) + "\n")
    with pytest.raises(LingcoderError, match="no `test` code"):
        load_benchmark("humaneval+", bad)


def test_mbxp_python_tests_that_only_define_check_are_called(tmp_path):
    row = {
        "task_id": "MBPP/1",
        "language": "python",
        "prompt": "def double(x):\n",
        "entry_point": "double",
        "test": "def check(candidate):\n    assert candidate(2) == 4\n",
        "canonical_solution": "    return 2 * x\n",
    }
    problem = load_benchmark("mbxp", write_jsonl(tmp_path / "mbxp.jsonl", [row])).problems["MBPP/1"]
    assert (
        run_program("python", problem.solution("    return 2 * x\n"), tests=problem.tests).status == "passed"
    )
    assert run_program("python", problem.solution("    return 0\n"), tests=problem.tests).status == "failed"
    without_entry = {k: v for k, v in row.items() if k != "entry_point"}
    with pytest.raises(LingcoderError, match="never call it"):
        load_benchmark("mbxp", write_jsonl(tmp_path / "bad.jsonl", [without_entry]))


def test_mbpp_base_prompt_is_three_shot_when_the_examples_are_there(tmp_path):
    shots = [
        {**MBPP_ORIGINAL[0], "task_id": n, "text": f"Task {n}.", "code": f"def f{n}():\n    return {n}"}
        for n in (2, 3, 4)
    ]
    bench = load_benchmark("mbpp", write_jsonl(tmp_path / "mbpp.jsonl", shots + MBPP_ORIGINAL))
    prompt = bench.problems["Mbpp/11"].prompt
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3 and prompt.endswith("[BEGIN]\n")
    assert "def f3():\n    return 3\n[DONE]" in prompt and bench.problems["Mbpp/11"].stop == ("[DONE]",)
    (chat,) = instruct_messages(bench.problems["Mbpp/11"])  # chat models get the task alone
    assert "[BEGIN]" not in chat["content"] and "double a number" in chat["content"]
    zero_shot = load_benchmark("mbpp", write_jsonl(tmp_path / "one.jsonl", MBPP_ORIGINAL)).problems["Mbpp/11"]
    assert "[BEGIN]" not in zero_shot.prompt
