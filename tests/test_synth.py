"""`lingcoder synth`: mining, self-contained extraction, sandbox verification, preference pairs, dedup,
decontamination, the funnel, the Ling formats, teacher parsing and the teacher protocol over real HTTP."""

import gzip
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lingcoder.data.decontaminate import humaneval_path
from lingcoder.errors import LingcoderError
from lingcoder.evaluate.execution import run_program
from lingcoder.evaluate.prompts import extract_code
from lingcoder.synth.mutations import mutants
from lingcoder.synth.parsing import ParseError, parse_knowledge_point, parse_problem_reply, parse_question
from lingcoder.synth.pipeline import SynthConfig, synth
from tests.openai_stub import StubError, chat_choices, openai_stub, text_choices

STATS_MODULE = '''\
"""Small statistics helpers."""
import math
import os
from collections import Counter as Tally

SCALE = 2
_OFFSET = SCALE + 1


def scaled_mean(values):
    """Mean of `values` times SCALE, plus the offset.

    >>> scaled_mean([1, 2, 3])
    7.0
    """
    return math.fsum(values) / len(values) * SCALE + _OFFSET


def most_common(items):
    """The most common item.

    >>> most_common("abracadabra")
    'a'
    """
    return _top(Tally(items))


def _top(counts):
    return counts.most_common(1)[0][0]


def clamp(x, low, high):
    """Clamp x into [low, high]."""
    if x < low:
        return low
    if x > high:
        return high
    return x


def wrong_double(x):
    """Twice x (its doctest is wrong).

    >>> wrong_double(2)
    5
    """
    return 2 * x


def here():
    """The directory of this file.

    >>> isinstance(here(), str)
    True
    """
    return os.path.dirname(__file__)


def undocumented(x):
    return x


class Box:
    def size(self):
        """Its size.

        >>> Box().size()
        0
        """
        return 0
'''

CLAMP_TESTS = '''\
from stats import clamp


def test_clamp():
    assert clamp(5, 0, 3) == 3
    assert clamp(-1, 0, 3) == 0
    limit = 3
    assert clamp(2, 0, limit) == 2


assert clamp(1, 0, 3) == 1
'''

RELATIVE = '''\
from .stats import SCALE


def triple(x):
    """Three times x, scaled.

    >>> triple(1)
    6
    """
    return 3 * x * SCALE
'''

SPIN = '''\
def spin(n):
    """Never returns.

    >>> spin(1)
    1
    """
    while True:
        n += 1
'''

# The same function as in STATS_MODULE, re-indented and re-wrapped: a duplicate.
DUPLICATE = '''\
import math
SCALE = 2
_OFFSET = SCALE + 1
def scaled_mean(values):
    """Mean of `values` times SCALE, plus the offset.

    >>> scaled_mean([1, 2, 3])
    7.0
    """
    return (math.fsum(values) / len(values)
            * SCALE + _OFFSET)
'''


def write_curated(root: Path, files: dict[str, str], repo: str = "pkg", name: str = "00000.parquet") -> Path:
    """A curated-like directory (file/high parquet with the curated columns)."""
    paths = list(files)
    table = pa.table({"id": [f"{repo}/{p}" for p in paths], "repo": [repo] * len(paths), "path": paths,
                      "language": ["Python" if p.endswith(".py") else "Markdown" for p in paths],
                      "content": [files[p] for p in paths]})
    (root / "file" / "high").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "file" / "high" / name)
    return root


def humaneval_zero() -> str:
    with gzip.open(humaneval_path(), "rt") as handle:
        record = json.loads(handle.readline())
    return record["prompt"] + record["canonical_solution"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    return write_curated(root, {"stats.py": STATS_MODULE, "tests/test_stats.py": CLAMP_TESTS, "rel.py": RELATIVE,
                                "spin.py": SPIN, "copy/stats_copy.py": DUPLICATE, "he.py": humaneval_zero(),
                                "README.md": "# pkg\n"})


@pytest.fixture(scope="module")
def small_run(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    stats = synth(SynthConfig(small_corpus, out, workers=2, timeout=1.5, n_candidates=6))
    return out, stats


def drops_by_function(out: Path) -> dict[str, dict]:
    return {row["where"].rsplit(" ", 1)[1]: row for row in read_jsonl(out / "dropped.jsonl") if row["stage"] != "dpo"}


def test_mining_keeps_documented_tested_self_contained_functions(small_run):
    out, stats = small_run
    records = {r["origin"].rsplit(" ", 1)[1]: r for r in read_jsonl(out / "sft.jsonl")}
    assert set(records) == {"scaled_mean", "most_common", "clamp"}
    mean = records["scaled_mean"]["messages"][1]["content"]
    # the imports and constants it needs, nothing else; the docstring is the task, not the answer
    assert "import math" in mean and "SCALE = 2" in mean and "_OFFSET = SCALE + 1" in mean
    assert "import os" not in mean and "Tally" not in mean and ">>>" not in mean
    common = records["most_common"]["messages"][1]["content"]
    assert "from collections import Counter as Tally" in common and "def _top(counts):" in common
    prompt = records["scaled_mean"]["messages"][0]["content"]
    assert prompt.startswith("Write a Python function `def scaled_mean(values)`.") and ">>> scaled_mean" in prompt
    # asserts mined from another file of the repository: only those that need nothing but the function
    clamp_tests = records["clamp"]["tests"]
    assert "assert clamp(5, 0, 3) == 3" in clamp_tests and "assert clamp(1, 0, 3) == 1" in clamp_tests
    assert "limit" not in clamp_tests
    assert records["clamp"]["tags"] == ["synthetic", "mined", "mined_asserts"]
    assert "doctest" in records["scaled_mean"]["tags"]


def test_every_function_looked_at_is_accounted_for_with_its_reason(small_run):
    out, stats = small_run
    drops = drops_by_function(out)
    assert drops["wrong_double"]["stage"] == "verify" and drops["wrong_double"]["reason"] == "failed"
    assert "doctest failed" in drops["wrong_double"]["detail"]
    assert drops["here"]["reason"] == "not_self_contained" and "__file__" in drops["here"]["detail"]
    assert drops["triple"]["reason"] == "not_self_contained" and "relative import" in drops["triple"]["detail"]
    assert drops["spin"]["stage"] == "verify" and drops["spin"]["reason"] == "timeout"
    assert (drops["size"]["reason"], drops["undocumented"]["reason"]) == ("method", "no_docstring")
    assert drops["_top"]["reason"] == "no_docstring" and drops["test_clamp"]["reason"] == "no_docstring"
    assert drops["scaled_mean"]["stage"] == "dedup" and "stats.py" in drops["scaled_mean"]["detail"]
    assert drops["has_close_elements"]["stage"] == "decontaminate"
    assert "HumanEval/0" in drops["has_close_elements"]["detail"]

    mined = stats["samples"]["mined"]
    dropped = sum(n for reasons in mined["dropped"].values() for n in reasons.values())
    assert mined["seen"] == 13 and mined["kept"] == 3 and mined["unaccounted"] == 0
    assert mined["seen"] == mined["kept"] + dropped
    assert stats["funnel"][0] == {"stage": "candidates", "remaining": 13}
    assert stats["funnel"][-1]["remaining"] == stats["sft_records"] == 3
    assert stats["documents"] == {"read": 7, "python": 6, "syntax_error": 0, "not_python": {"Markdown": 1},
                                  "skipped_sources": {}}
    assert stats["dpo"]["unaccounted"] == 0
    assert len(read_jsonl(out / "dropped.jsonl")) == dropped + sum(stats["dpo"]["no_pair"].values())


def test_records_are_in_the_ling_formats(small_run):
    out, _ = small_run
    for record in read_jsonl(out / "sft.jsonl"):
        assert isinstance(record["mid"], str) and record["languages"] == ["python"]
        assert [m["role"] for m in record["messages"]] == ["HUMAN", "ASSISTANT"]
        assert all(isinstance(m["content"], str) and m["content"] for m in record["messages"])
        assert isinstance(record["tags"], list) and all(isinstance(t, str) for t in record["tags"])
    pairs = read_jsonl(out / "dpo.jsonl")
    assert pairs
    for pair in pairs:
        assert all(isinstance(pair[k], str) and pair[k] for k in ("mid", "prompt", "chosen", "rejected"))
        assert pair["chosen"] != pair["rejected"] and pair["source"] == "mutation"
    assert len({r["mid"] for r in read_jsonl(out / "sft.jsonl")} | {p["mid"] for p in pairs}) == 3 + len(pairs)


def test_mutation_pairs_rejected_fails_and_chosen_passes_in_the_sandbox(small_run):
    out, stats = small_run
    tests = {r["messages"][0]["content"]: r["tests"] for r in read_jsonl(out / "sft.jsonl")}
    pairs = read_jsonl(out / "dpo.jsonl")
    assert stats["dpo"]["pairs"] == len(pairs) >= 2 and stats["dpo"]["by_source"] == {"mutation": len(pairs)}
    for pair in pairs:
        solution_tests = tests[pair["prompt"]]
        assert run_program("python", extract_code(pair["chosen"], "python"), tests=solution_tests).passed
        rejected = run_program("python", extract_code(pair["rejected"], "python"), tests=solution_tests, timeout=3)
        assert rejected.status in ("failed", "timeout", "error"), pair
        assert pair["mutation"] in stats["dpo"]["by_mutation"]


def test_mutants_are_single_edits_of_the_target_function_only():
    solution = "LIMIT = 3\n\n\ndef helper(a):\n    return a - 1\n\n\ndef f(x, y):\n    # keep me\n" \
               "    if x < y and y > 0:\n        return x - y\n    return LIMIT\n"
    found = mutants(solution, "f")
    operators = {m.operator for m in found}
    assert operators == {"flip_comparison", "off_by_one", "swap_operands", "swap_boolean", "negate_condition",
                         "drop_statement"}
    for mutant in found:
        assert mutant.code != solution and "# keep me" in mutant.code
        assert mutant.code.startswith("LIMIT = 3\n\n\ndef helper(a):\n    return a - 1\n")  # helpers untouched
    assert any("(x >= y)" in m.code for m in found) and any("(y - x)" in m.code for m in found)


def test_synth_is_deterministic_given_the_seed(small_corpus, small_run, tmp_path):
    out, _ = small_run
    synth(SynthConfig(small_corpus, tmp_path, workers=1, timeout=1.5, n_candidates=6))
    for name in ("sft.jsonl", "dpo.jsonl"):
        assert (tmp_path / name).read_text() == (out / name).read_text()


def test_max_problems_keeps_a_seeded_sample_and_accounts_for_the_rest(small_corpus, tmp_path):
    stats = synth(SynthConfig(small_corpus, tmp_path, workers=2, timeout=1.5, max_problems=2, n_candidates=0))
    mined = stats["samples"]["mined"]
    assert mined["dropped"]["limit"] == {"max_problems": 3} and mined["unaccounted"] == 0
    assert stats["dpo"]["pairs"] == 0 and (tmp_path / "dpo.jsonl").read_text() == ""


def test_a_benchmark_file_decontaminates_too(small_corpus, tmp_path):
    bench = tmp_path / "mybench.jsonl"
    solution = "def most_common(items):\n    return _top(Tally(items))\n\n\ndef _top(counts):\n" \
               "    return counts.most_common(1)[0][0]\n"
    bench.write_text(json.dumps({"task_id": "mybench/7", "canonical_solution": solution}) + "\n")
    stats = synth(SynthConfig(small_corpus, tmp_path / "out", workers=2, timeout=1.5, n_candidates=0,
                              benchmarks=[str(bench)]))
    assert stats["samples"]["mined"]["dropped"]["decontaminate"] == {"benchmark_overlap": 2}
    assert stats["settings"]["benchmarks"] == ["HumanEval", "mybench"]
    drop = next(r for r in read_jsonl(tmp_path / "out" / "dropped.jsonl") if r["where"].endswith("most_common"))
    assert drop["detail"] == "mybench/7"


def test_real_stdlib_modules_give_verified_records(tmp_path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = {f"{name}.py": (stdlib / f"{name}.py").read_text(encoding="utf-8") for name in ("statistics", "bisect")}
    write_curated(tmp_path / "curated", files, repo="stdlib")
    stats = synth(SynthConfig(tmp_path / "curated", tmp_path / "out", workers=2, max_problems=4, n_candidates=2))
    records = read_jsonl(tmp_path / "out" / "sft.jsonl")
    assert len(records) >= 1 and stats["sft_records"] == len(records)
    for record in records:  # each verified answer really passes its tests
        assert run_program("python", extract_code(record["messages"][1]["content"], "python"),
                           tests=record["tests"]).passed
    assert stats["samples"]["mined"]["unaccounted"] == 0


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(LingcoderError, match="curated directory not found"):
        synth(SynthConfig(tmp_path / "missing", tmp_path / "out"))
    with pytest.raises(LingcoderError, match="--teacher-model"):
        synth(SynthConfig(tmp_path, tmp_path / "out", teacher_url="http://127.0.0.1:9/v1"))
    with pytest.raises(LingcoderError, match="not both"):
        synth(SynthConfig(tmp_path, tmp_path / "out", candidates_url="http://x/v1", candidates_model="m",
                          candidates_checkpoint=str(tmp_path)))
    with pytest.raises(LingcoderError, match="teacher modes"):
        synth(SynthConfig(tmp_path, tmp_path / "out", teacher_url="http://x/v1", teacher_model="m",
                          teacher_modes=["poetry"]))


def test_cli_runs_and_reports_bad_input_in_one_line(small_corpus, tmp_path):
    def lingcoder(*args):
        return subprocess.run([sys.executable, "-m", "lingcoder", "synth", *args], capture_output=True, text=True,
                              timeout=300)

    for args, message in [((str(tmp_path / "missing"), "--out", str(tmp_path / "o")), "curated directory not found"),
                          ((str(tmp_path), "--out", str(tmp_path / "o")), "no Parquet files")]:
        result = lingcoder(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    result = lingcoder(str(small_corpus), "--out", str(tmp_path / "cli"), "--workers", "2", "--timeout", "1.5",
                       "--n-candidates", "0")
    assert result.returncode == 0, result.stderr
    assert "SFT records: 3" in result.stderr
    assert json.loads((tmp_path / "cli" / "stats.json").read_text())["sft_records"] == 3


# -- teacher replies ---------------------------------------------------------------------------------------

GOOD_REPLY = """### Problem
Write `double(x)` returning twice x.

### Solution
```python
def double(x):
    return 2 * x
```

### Tests
```python
assert double(2) == 4
assert double(-1) == -2
```
"""


def test_parse_a_well_formed_reply():
    parsed = parse_problem_reply(GOOD_REPLY)
    assert parsed.problem == "Write `double(x)` returning twice x."
    assert parsed.solution == "def double(x):\n    return 2 * x\n"
    assert parsed.tests.startswith("assert double(2) == 4") and parsed.entry_point == "double"


@pytest.mark.parametrize("reply", [
    # other heading styles, and a missing closing fence at the end of a truncated reply
    "**Problem:**\nWrite double.\n\n**Solution:**\n```py\ndef double(x):\n    return 2 * x\n```\n"
    "Tests:\n```python\nassert double(2) == 4\n",
    # no headings: the block with asserts is the tests
    "Write double.\n\n```python\ndef double(x):\n    return 2 * x\n```\nand\n```python\nassert double(3) == 6\n```",
    # one block mixing code and top-level asserts
    "Write double.\n```python\ndef double(x):\n    return 2 * x\n\nassert double(3) == 6\n```",
    # tests that import the solution from a module
    "Write double.\n### Solution\n```python\ndef double(x):\n    return 2 * x\n```\n### Tests\n"
    "```python\nfrom solution import double\nassert double(3) == 6\n```",
])
def test_parse_drifting_replies(reply):
    parsed = parse_problem_reply(reply)
    assert parsed.entry_point == "double" and "def double" in parsed.solution and "import" not in parsed.tests
    assert parsed.problem.startswith("Write double")
    assert run_program("python", parsed.solution, tests=parsed.tests).passed


@pytest.mark.parametrize("reply, reason", [
    ("I cannot help with that.", "no_code_block"),
    ("Q\n```python\ndef f(:\n```\n```python\nassert f()\n```", "solution_syntax_error"),
    ("Q\n### Solution\n```python\ndef f():\n    return 1\n```\n### Tests\n```python\nprint(f())\n```",
     "tests_without_assert"),
    ("Q\n### Solution\n```python\nx = 1\n```\n### Tests\n```python\nassert x == 1\n```", "solution_defines_nothing"),
    ("Q\n### Solution\n```python\ndef f():\n    return 1\n```\n### Tests\n```python\nassert g() == 1\n```",
     "tests_do_not_call_solution"),
    ("Q\n```python\ndef f():\n    return 1\n```", "no_tests"),
    ("### Solution\n```python\ndef f():\n    return 1\n```\n### Tests\n```python\nassert f() == 1\n```", "no_problem"),
    ("### Solution\n```python\ndef f():\n    return 1\n```\n", "no_tests"),
])
def test_malformed_replies_fail_with_a_reason(reply, reason):
    with pytest.raises(ParseError) as info:
        parse_problem_reply(reply)
    assert info.value.reason == reason


def test_questions_and_knowledge_points():
    assert parse_question("  Write a function that reverses a list.\n") == "Write a function that reverses a list."
    with pytest.raises(ParseError, match="too short"):
        parse_question("hi")
    assert parse_knowledge_point("Sure!\nKnowledge point: `binary search` on sorted lists") == \
        "binary search` on sorted lists"
    assert parse_knowledge_point("recursion with memoisation") == "recursion with memoisation"
    with pytest.raises(ParseError):
        parse_knowledge_point("   ")


# -- the teacher protocol over HTTP --------------------------------------------------------------------------

QUESTIONS = ["Write a function `double(x)` that returns twice x.", "hi",
             "Write a function `half(x)` that returns x divided by 2.",
             "Write a function `boom(x)`: the endpoint refuses this request."]


def teacher_reply(request):
    """Scripted teacher replies: good, malformed and wrong answers, and one refused request."""
    body = request.body
    if "refuses" in json.dumps(body):
        raise StubError(400, "prompt too long")
    if request.path.endswith("/completions") and "prompt" in body:
        return {"choices": text_choices([QUESTIONS[i % len(QUESTIONS)] for i in range(body["n"])])}
    content = body["messages"][-1]["content"]
    if "Knowledge point" in content:
        text = "Knowledge point: doubling numbers"
    elif "exercises this knowledge point" in content:
        text = GOOD_REPLY.replace("double", "twice")
    elif content.startswith(QUESTIONS[0]):
        text = GOOD_REPLY.split("### Solution")[1].join(["### Solution", ""])
    elif content.startswith("Write a Python function `def clamp"):  # an answer copied from HumanEval
        text = f"```python\n{humaneval_zero()}\n```"
    elif content.startswith(QUESTIONS[2]):  # a wrong solution: verification drops it
        text = "### Solution\n```python\ndef half(x):\n    return x // 3\n```\n### Tests\n" \
               "```python\nassert half(3) == 1.5\n```"
    else:
        text = "no idea"
    return {"choices": chat_choices([text] * body["n"])}


def requests_with_a_prompt(teacher):
    """The bodies of the teacher's completion (magpie) requests."""
    return [r.body for r in teacher.requests if "prompt" in r.body]


def test_teacher_protocol_parsing_verification_and_bookkeeping(small_corpus, tmp_path):
    with openai_stub(teacher_reply) as teacher:
        url = teacher.url
        stats = synth(SynthConfig(small_corpus, tmp_path, workers=2, timeout=1.5, teacher_url=url,
                                  teacher_model="scripted", teacher_problems=4, seed=5, candidates_url=url,
                                  candidates_model="scripted", n_candidates=1))
    magpie, evolved = stats["samples"]["magpie"], stats["samples"]["evolved"]
    assert magpie == {"seen": 4, "kept": 1, "unaccounted": 0, "dropped": {
        "teacher": {"bad_question": 1, "request_failed": 1}, "verify": {"failed": 1}}}
    # four seeds (documented module-level functions) -> the same evolved problem: one kept, three duplicates
    assert evolved == {"seen": 4, "kept": 1, "unaccounted": 0, "dropped": {"dedup": {"duplicate": 3}}}
    assert stats["teacher"]["requests"] == {"completions": 1, "chat": 3 + 4 + 4}
    assert stats["teacher"]["parse_failures"] == {"bad_question": 1} and stats["teacher"]["failed_requests"] == 1
    prompts = {r["messages"][0]["content"].split("\n\n")[0]: r for r in read_jsonl(tmp_path / "sft.jsonl")}
    assert {QUESTIONS[0], "Write `twice(x)` returning twice x."} <= set(prompts)
    assert prompts[QUESTIONS[0]]["tags"] == ["synthetic", "teacher", "magpie"]
    # answers for preference pairs: "no idea" fails (a pair), the double solution passes (no pair), the HumanEval
    # answer would make a pair but is contaminated
    assert stats["dpo"]["pairs"] == 3 and stats["dpo"]["problems"] == 5
    assert stats["dpo"]["no_pair"] == {"benchmark_overlap": 1, "no_failing_answer": 1}
    assert "HumanEval/0" in next(r["detail"] for r in read_jsonl(tmp_path / "dropped.jsonl")
                                 if r["reason"] == "benchmark_overlap")
    magpie_request = requests_with_a_prompt(teacher)[0]
    assert magpie_request["prompt"].endswith("<role>HUMAN</role>") and magpie_request["n"] == 4
    assert magpie_request["stop"] == ["<|endoftext|>", "<role>"] and magpie_request["model"] == "scripted"


def test_magpie_uses_the_teachers_own_template_when_given(small_corpus, tmp_path):
    with openai_stub(teacher_reply) as teacher:
        stats = synth(SynthConfig(small_corpus, tmp_path, workers=2, timeout=1.5, n_candidates=0,
                                  teacher_url=teacher.url, teacher_model="scripted", teacher_modes=["magpie"],
                                  teacher_problems=1,
                                  magpie_prefix="<|im_start|>user\n", magpie_stop=["<|im_end|>"]))
    request = requests_with_a_prompt(teacher)[0]
    assert request["prompt"] == "<|im_start|>user\n" and request["stop"] == ["<|im_end|>"]
    assert stats["samples"]["magpie"]["kept"] == 1 and "evolved" not in stats["samples"]


@pytest.fixture(scope="module")
def micro_checkpoint(tmp_path_factory):
    """A random micro model with a tokenizer and Ling's chat template: a poor but real teacher."""
    torch = pytest.importorskip("torch")
    from lingcoder.data.tokenizer import save_tokenizer, train_tokenizer
    from lingcoder.model import BailingMoeForCausalLM

    from .conftest import embedded_text, micro_config

    tokenizer = train_tokenizer(embedded_text()[:4], vocab_size=400)
    torch.manual_seed(0)
    model = BailingMoeForCausalLM(micro_config(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=2048))
    directory = tmp_path_factory.mktemp("checkpoints") / "micro-teacher"
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory, model_max_length=model.config.max_position_embeddings)
    return directory


def test_teacher_and_model_candidates_against_our_own_server(small_corpus, micro_checkpoint, tmp_path):
    """The tiny model is a poor teacher; the protocol, parsing, verification and bookkeeping are real."""
    from lingcoder.serve.server import serve_in_background

    with serve_in_background(micro_checkpoint, max_batch_size=8) as url:
        stats = synth(SynthConfig(small_corpus, tmp_path, workers=2, timeout=1.5, teacher_url=url,
                                  teacher_model="micro-teacher", teacher_problems=2, teacher_max_tokens=24,
                                  candidates_url=url, candidates_model="micro-teacher", n_candidates=2,
                                  candidates_max_tokens=24))
    teacher = stats["teacher"]
    assert teacher["requests"]["completions"] == 1 and teacher["requests"]["chat"] >= 2
    for kind in ("magpie", "evolved"):
        assert stats["samples"][kind]["seen"] == 2 and stats["samples"][kind]["unaccounted"] == 0
    teacher_drops = sum(sum(stats["samples"][k]["dropped"].get("teacher", {}).values()) for k in ("magpie", "evolved"))
    assert teacher_drops == sum(teacher["parse_failures"].values()) + teacher["failed_requests"]
    check_model_pairs(stats, tmp_path)


def test_checkpoint_candidates_make_model_pairs(small_corpus, micro_checkpoint, tmp_path):
    stats = synth(SynthConfig(small_corpus, tmp_path, workers=2, timeout=1.5,
                              candidates_checkpoint=str(micro_checkpoint), n_candidates=2, candidates_max_tokens=24))
    assert stats["settings"]["dpo_source"] == "model micro-teacher"
    check_model_pairs(stats, tmp_path)


def check_model_pairs(stats: dict, out: Path) -> None:
    """Every verified problem got 2 executed answers and either a pair or a reason; pairs say their source."""
    dpo = stats["dpo"]
    assert dpo["candidates_run"] == 2 * dpo["problems"] and dpo["problems"] == 3
    assert dpo["unaccounted"] == 0 and dpo["pairs"] + sum(dpo["no_pair"].values()) == 3
    tests = {r["messages"][0]["content"]: r["tests"] for r in read_jsonl(out / "sft.jsonl")}
    for pair in read_jsonl(out / "dpo.jsonl"):
        assert pair["source"] == "model" and pair["model"] == "micro-teacher" and pair["answers"] == 2
        rejected = run_program("python", extract_code(pair["rejected"], "python"), tests=tests[pair["prompt"]])
        assert not rejected.passed
        assert pair["chosen_from"] == "reference" or pair["answers_passed"] > 0


def test_mining_in_worker_processes_gives_the_same_candidates(small_corpus, monkeypatch):
    from lingcoder.synth import mining
    from lingcoder.synth.corpus import read_curated

    files, _ = read_curated(small_corpus)
    alone = mining.mine(files, workers=1)
    monkeypatch.setattr(mining, "FILES_PER_PROCESS", 1)  # small corpora are mined in-process otherwise
    assert mining.mine(files, workers=2) == alone
