"""The benchmarks of the paper's table beyond HumanEval/MBPP/MultiPL-E: one module each.

Each module owns one benchmark family end to end: it reads the released file (`load`), builds the
prompts (base and instruct) and turns a completion into the program judged in our sandbox, with the
benchmark's own timeout. `SUITES` maps every name `lingcoder eval --benchmark` accepts to its module
and to where the file comes from (shown when the file is missing).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from lingcoder.errors import LingcoderError


@dataclass(frozen=True)
class Suite:
    module: str  # lingcoder.evaluate.suites.<module>
    how_to_get: str


_HUMANEVAL_INFILLING = (
    "download {file} from github.com/openai/human-eval-infilling/tree/master/data "
    "(the PyPI package of that name is an empty placeholder)"
)
_HUMANEVALPACK = (
    "save one language of the hub dataset bigcode/humanevalpack, e.g. "
    "datasets.load_dataset('bigcode/humanevalpack', 'python', split='test').to_json('humanevalpack-python.jsonl') "
    "(configs: python, js, cpp, java, go, rust); several files may be concatenated"
)
SUITES: dict[str, Suite] = {
    "livecodebench": Suite(
        "livecodebench",
        "download a code_generation_lite file, e.g. test5.jsonl, from the hub dataset "
        "livecodebench/code_generation_lite (huggingface.co/datasets/livecodebench/code_generation_lite/tree/main)",
    ),
    "bigcodebench-complete": Suite(
        "bigcodebench",
        "save the hub dataset: datasets.load_dataset('bigcode/bigcodebench', split='v0.1.4')"
        ".to_json('bigcodebench.jsonl')",
    ),
    "bigcodebench-instruct": Suite(
        "bigcodebench",
        "save the hub dataset: datasets.load_dataset('bigcode/bigcodebench', split='v0.1.4')"
        ".to_json('bigcodebench.jsonl')",
    ),
    "cruxeval-i": Suite("cruxeval", "download data/cruxeval.jsonl from github.com/facebookresearch/cruxeval"),
    "cruxeval-o": Suite("cruxeval", "download data/cruxeval.jsonl from github.com/facebookresearch/cruxeval"),
    "humanevalfix": Suite("humanevalfix", _HUMANEVALPACK),
    "ds-1000": Suite("ds1000", "download data/ds1000.jsonl.gz from github.com/xlang-ai/DS-1000"),
    "spider": Suite(
        "spider",
        "download and unzip the Spider release (yale-lily.github.io/spider): pass spider/dev.json; "
        "the SQLite databases are read from the database/ folder beside it",
    ),
    "humaneval-infill-single": Suite(
        "infilling", _HUMANEVAL_INFILLING.format(file="HumanEval-SingleLineInfilling.jsonl.gz")
    ),
    "humaneval-infill-multi": Suite(
        "infilling", _HUMANEVAL_INFILLING.format(file="HumanEval-MultiLineInfilling.jsonl.gz")
    ),
    "humaneval-infill-random": Suite(
        "infilling", _HUMANEVAL_INFILLING.format(file="HumanEval-RandomSpanInfilling.jsonl.gz")
    ),
}
ALIASES = {
    "lcb": "livecodebench",
    "bigcodebench": "bigcodebench-complete",
    "humaneval-fix": "humanevalfix",
    "humanevalfixtests": "humanevalfix",
    "ds1000": "ds-1000",
    "cruxeval-input": "cruxeval-i",
    "cruxeval-output": "cruxeval-o",
}


def load(name: str, path: str | Path | None, options):
    """Load benchmark `name` (a key of SUITES) from its released file at `path`."""
    suite = SUITES[name]
    if path is None:
        raise LingcoderError(
            f"benchmark {name} reads a local file: pass its path (--benchmark-file). How to get it: {suite.how_to_get}"
        )
    path = Path(path)
    if not path.is_file():
        raise LingcoderError(f"{path}: benchmark file for {name} not found. How to get it: {suite.how_to_get}")
    module = importlib.import_module(f"lingcoder.evaluate.suites.{suite.module}")
    bench = module.load(name, path, options)
    if not bench.problems:
        raise LingcoderError(f"{path}: no {name} problems in this file (or none in the chosen window)")
    return bench


def collect(name: str, rows) -> dict:
    """Problems by task_id from (where, problem) pairs; a repeated task_id is an error naming the line."""
    problems = {}
    for where, problem in rows:
        if problem.task_id in problems:
            raise LingcoderError(f"{where}: duplicate task_id {problem.task_id!r} in this {name} file")
        problems[problem.task_id] = problem
    return problems
