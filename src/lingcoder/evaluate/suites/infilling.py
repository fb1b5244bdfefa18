"""HumanEval-infilling: fill the middle of a HumanEval solution, from the released
HumanEval-{SingleLine,MultiLine,RandomSpan}Infilling.jsonl.gz files (rows: task_id such as
SingleLineInfilling/HumanEval/0/L0, prompt (the code before the gap), suffix (after it),
canonical_solution (the gap), test, entry_point).

Prompts use our tokenizer's fill-in-the-middle tokens, in the order the model was trained with:
PSM `<|fim_prefix|>prefix<|fim_suffix|>suffix<|fim_middle|>` or SPM
`<|fim_prefix|><|fim_suffix|>suffix<|fim_middle|>prefix` (choose with the fim mode). The program
judged is prefix + completion + suffix with the benchmark's tests (3 s limit, as in its harness).
"""

from __future__ import annotations

from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import Benchmark, BenchmarkOptions, Problem, read_rows
from lingcoder.evaluate.suites import collect

# The special tokens of lingcoder.data.tokenizer (kept here so evaluation does not import `tokenizers`).
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"
EOS = "<|endoftext|>"
SECONDS_PER_TASK = 3.0
KINDS = {
    "humaneval-infill-single": "SingleLineInfilling",
    "humaneval-infill-multi": "MultiLineInfilling",
    "humaneval-infill-random": "RandomSpanInfilling",
}


def fim_prompt(prefix: str, suffix: str, mode: str) -> str:
    if mode == "spm":
        return f"{FIM_PREFIX}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}{prefix}"
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


def _problem(name: str, row: dict, where: str, mode: str) -> Problem:
    keys = ("task_id", "prompt", "suffix", "canonical_solution", "test", "entry_point")
    missing = [k for k in keys if k not in row]
    if missing:
        raise LingcoderError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(row))})")
    task_id = str(row["task_id"])
    kind = KINDS[name]
    if not task_id.startswith(kind):
        raise LingcoderError(f"{where}: task {task_id!r} is not a {kind} task: is this the file for {name}?")
    prefix, suffix = row["prompt"], row["suffix"]
    return Problem(
        task_id,
        "python",
        fim_prompt(prefix, suffix, mode),
        f"{row['test']}\n\ncheck({row['entry_point']})\n",
        prompt_is_code=False,
        reference=row["canonical_solution"],
        stop=(EOS, FIM_PAD, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE),
        entry_point=row["entry_point"],
        instruction=(
            "Fill in the missing code marked <MISSING> in this Python function. Reply with only the "
            f"missing code in one ```python fenced code block.\n\n```python\n{prefix}<MISSING>{suffix}```"
        ),
        make_solution=lambda middle: prefix + middle + suffix,
        timeout=SECONDS_PER_TASK,
    )


def load(name: str, path: Path, options: BenchmarkOptions) -> Benchmark:
    rows = ((where, _problem(name, row, where, options.fim_mode)) for _, where, row in read_rows(path))
    return Benchmark(name, collect(name, rows))
