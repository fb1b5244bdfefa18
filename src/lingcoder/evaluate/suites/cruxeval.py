"""CRUXEval: predict a function's output (`cruxeval-o`) or an input that yields a given output
(`cruxeval-i`), from the released data/cruxeval.jsonl (rows: id, code, input, output).

The model answers between [ANSWER] and [/ANSWER] (the benchmark's own format; generation stops at
[/ANSWER]). The answer is cleaned as CRUXEval does (tags, a leading `assert`, the side of `==` that
holds the prediction) and judged as CRUXEval judges it, under its 3 s limit: a predicted input is a
call `f(...)`, run as `assert <call> == <output>` (an answer without a call of f fails); a predicted
output is run as `assert f(<input>) == <prediction>` (an answer that merely repeats the call fails).
"""

from __future__ import annotations

from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import Benchmark, BenchmarkOptions, Problem, read_rows
from lingcoder.evaluate.suites import collect

SECONDS_PER_TASK = 3.0  # CRUXEval's execution timeout

_EXAMPLE_CODE = "def f(s):\n    return s + 'a'"
_OUTPUT_PROMPT = (
    "Given a Python function and an assertion with its input, complete the assertion with the literal "
    "output of the function on that input (no unsimplified expressions, no function calls), between "
    "[ANSWER] and [/ANSWER].\n\n[PYTHON]\n{example}\nassert f('x9j') == ??\n[/PYTHON]\n"
    "[ANSWER]\nassert f('x9j') == 'x9ja'\n[/ANSWER]\n\n[PYTHON]\n{code}\nassert f({input}) == ??\n[/PYTHON]\n[ANSWER]\n"
)
_INPUT_PROMPT = (
    "Given a Python function and an output, find any input such that executing the function on it "
    "gives that output. Answer with a passing assertion between [ANSWER] and [/ANSWER].\n\n"
    "[PYTHON]\n{example}\nassert f(??) == 'x9ja'\n[/PYTHON]\n[ANSWER]\nassert f('x9j') == 'x9ja'\n[/ANSWER]\n\n"
    "[PYTHON]\n{code}\nassert f(??) == {output}\n[/PYTHON]\n[ANSWER]\n"
)


def clean_prediction(answer: str, predict: str) -> str:
    """The predicted expression in a model's answer (`predict` is "input" or "output")."""
    text = answer.split("[/ANSWER]")[0].replace("[ANSWER]", "").strip()
    if text.startswith("assert "):
        text = text[len("assert ") :].strip()
    if predict == "output":
        if "==" in text:
            text = text.split("==", 1)[1].strip()
        return text
    if "==" in text:
        text = text.split("==", 1)[0].strip()
    return text


def program(code: str, given: str, prediction: str, predict: str) -> str:
    if predict == "input":
        if "f(" not in prediction:
            return f"{code}\nassert False, 'the answer calls no f(...)'\n"
        return f"{code}\nassert {prediction} == {given}\n"
    if f"f({given})" in prediction:
        return f"{code}\nassert False, 'the answer repeats the call instead of predicting its value'\n"
    return f"{code}\nassert f({given}) == {prediction}\n"


def _problem(name: str, row: dict, where: str) -> Problem:
    missing = [k for k in ("id", "code", "input", "output") if k not in row]
    if missing:
        raise LingcoderError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(row))})")
    code, given_input, given_output = row["code"], row["input"], row["output"]
    predict = "input" if name == "cruxeval-i" else "output"
    given = given_output if predict == "input" else given_input
    template = _INPUT_PROMPT if predict == "input" else _OUTPUT_PROMPT
    text = template.format(example=_EXAMPLE_CODE, code=code, input=given_input, output=given_output)
    return Problem(
        str(row["id"]),
        "python",
        text,
        "",
        prompt_is_code=False,
        reference=f"f({given_input})" if predict == "input" else given_output,
        stop=("[/ANSWER]",),
        make_solution=lambda answer: program(code, given, clean_prediction(answer, predict), predict),
        timeout=SECONDS_PER_TASK,
    )


def load(name: str, path: Path, options: BenchmarkOptions) -> Benchmark:
    return Benchmark(name, collect(name, ((where, _problem(name, row, where)) for _, where, row in read_rows(path))))
