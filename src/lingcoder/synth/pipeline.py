"""`lingcoder synth`: curated corpus (+ optional teacher) -> verified SFT records and DPO pairs.

Stages, each candidate leaving at most one of them with a reason (records.py, `stats.json`):
mine (mining.py) and teacher (teacher.py) produce candidates; dedup and decontaminate (filters.py)
remove repeats and benchmark overlap; limit keeps a seeded sample of `max_problems`; verify
(verify.py) keeps only samples whose solution passes their tests in the sandbox. The kept samples
are the SFT records; preference pairs are then made from them (preference.py). Deterministic given
the seed (and, with a model, given an endpoint that honours seeds).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lingcoder.data.decontaminate import DecontaminationConfig
from lingcoder.errors import LingcoderError
from lingcoder.evaluate.sandbox import Sandbox
from lingcoder.synth.corpus import read_curated
from lingcoder.synth.filters import BenchmarkFilter, Deduplicator
from lingcoder.synth.mining import mine
from lingcoder.synth.preference import PairRun, model_pairs, mutation_pairs
from lingcoder.synth.records import Funnel, dpo_record, sft_record, write_jsonl
from lingcoder.synth.samples import Drop, Sample
from lingcoder.synth.teacher import MODES, Teacher, TeacherConfig
from lingcoder.synth.verify import drop_reason, run_all


@dataclass
class SynthConfig:
    """`lingcoder synth` (the recipe's `[synth]` table)."""

    curated: str  # a curated directory (`lingcoder curate` output)
    out: str  # output directory: sft.jsonl, dpo.jsonl, stats.json, dropped.jsonl
    teacher_url: str | None = None  # teacher endpoint (OpenAI-compatible, .../v1)
    teacher_model: str | None = None  # the teacher's model name at that endpoint
    teacher_api_key: str | None = None  # default: $OPENAI_API_KEY
    teacher_modes: list[str] | None = None  # magpie, evolved; None: both
    teacher_problems: int = 16  # teacher attempts per mode
    teacher_temperature: float = 0.8  # > 0
    teacher_max_tokens: int = 1024
    magpie_prefix: str | None = None  # the teacher's chat template up to a user turn; None: Ling's
    magpie_stop: list[str] | None = None  # stop strings ending the user turn
    candidates_url: str | None = None  # an endpoint whose answers make DPO pairs (default: program mutations)
    candidates_model: str | None = None  # the model name at candidates_url
    candidates_api_key: str | None = None
    candidates_checkpoint: str | None = None  # a checkpoint directory whose answers make DPO pairs
    candidates_engine: str = "lingcoder"  # runs candidates_checkpoint: lingcoder's engine or vllm (its server)
    n_candidates: int = 4  # answers (or mutants) tried per problem; 0 = no DPO pairs
    candidates_temperature: float = 0.8
    candidates_max_tokens: int = 512
    device: str = "cpu"  # for candidates_checkpoint
    workers: int | None = None  # parallel parsers and programs; None = every core
    max_problems: int = 0  # verify a seeded sample of this many problems; 0 = all
    seed: int = 0  # seed of every sampled choice
    timeout: float = 10.0  # seconds per program run
    benchmarks: list[str] | None = None  # extra benchmark JSONL files to decontaminate against
    humaneval: bool = True  # decontaminate against HumanEval too


def synth(config: SynthConfig) -> dict:
    """Write OUT/sft.jsonl, OUT/dpo.jsonl, OUT/dropped.jsonl and OUT/stats.json; return the stats."""
    c = config
    started = time.monotonic()
    workers = c.workers or os.cpu_count() or 1
    if c.n_candidates < 0 or workers < 1 or c.max_problems < 0 or c.timeout <= 0:
        raise LingcoderError(f"n_candidates={c.n_candidates}, workers={workers}, max_problems={c.max_problems}, "
                             f"timeout={c.timeout}: need n_candidates, max_problems >= 0, workers >= 1, timeout > 0")
    _check_candidates(c.candidates_url, c.candidates_model, c.candidates_checkpoint)
    teacher = _teacher_config(c.teacher_url, c.teacher_model, c.teacher_api_key, c.teacher_modes,
                              c.teacher_problems, c.teacher_temperature, c.teacher_max_tokens, c.magpie_prefix,
                              c.magpie_stop)
    benchmark_filter = BenchmarkFilter(DecontaminationConfig(c.humaneval, list(c.benchmarks or [])))
    files, skipped_sources = read_curated(c.curated)
    candidates = _candidates_backend(c.candidates_url, c.candidates_model, c.candidates_api_key,
                                     c.candidates_checkpoint, c.device, c.candidates_engine) if c.n_candidates else None
    out = Path(c.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    funnel = Funnel()
    sandbox = Sandbox()

    clock = time.monotonic()
    batch, documents, seeds = mine(files, workers)
    funnel.add(batch.seen, batch.drops)
    seconds["mine"] = time.monotonic() - clock
    teacher_counts = None
    if teacher is not None:
        from lingcoder.evaluate.backends import OpenAIBackend

        clock = time.monotonic()
        asker = Teacher(OpenAIBackend(teacher.url, teacher.model, api_key=teacher.api_key), teacher, c.seed)
        taught = asker.generate(seeds)
        funnel.add(taught.seen, taught.drops)
        batch.samples += taught.samples
        teacher_counts = asker.counts
        seconds["teacher"] = time.monotonic() - clock

    samples = _filter(batch.samples, funnel, benchmark_filter)
    samples = _limit(samples, funnel, c.max_problems, c.seed)
    clock = time.monotonic()
    verdicts = run_all([(s.solution, s.tests) for s in samples], workers=workers, timeout=c.timeout, sandbox=sandbox)
    verified, reference_seconds = [], []
    for sample, verdict in zip(samples, verdicts, strict=True):
        if verdict.passed:
            verified.append(sample)
            reference_seconds.append(verdict.seconds)
        else:
            funnel.add({}, [Drop(sample.origin, "verify", *drop_reason(verdict))])
    funnel.keep(verified)
    seconds["verify"] = time.monotonic() - clock

    clock = time.monotonic()
    common = {"seed": c.seed, "workers": workers, "timeout": c.timeout, "sandbox": sandbox}
    if not c.n_candidates:
        pairs, source = PairRun(), "none"
    elif candidates is not None:
        backend, name = candidates
        try:
            pairs = model_pairs(verified, backend, name, n=c.n_candidates, temperature=c.candidates_temperature,
                                max_tokens=c.candidates_max_tokens, **common)
        finally:
            if hasattr(backend, "close"):
                backend.close()  # a vLLM server started for the candidates
        source = f"model {name}"
    else:
        pairs, source = mutation_pairs(verified, reference_seconds, tries=c.n_candidates, **common), "mutation"
    _decontaminate_pairs(pairs, benchmark_filter)
    funnel.add({}, pairs.drops)
    seconds["dpo"] = time.monotonic() - clock

    write_jsonl(out / "sft.jsonl", [sft_record(s) for s in verified])
    write_jsonl(out / "dpo.jsonl", [dpo_record(p) for p in pairs.pairs])
    funnel.write_drops(out / "dropped.jsonl")
    stats = {
        "out": str(out),
        "curated": str(c.curated),
        "settings": {"seed": c.seed, "max_problems": c.max_problems, "timeout": c.timeout,
                     "n_candidates": c.n_candidates,
                     "dpo_source": source, "teacher": teacher.model if teacher else None,
                     "benchmarks": benchmark_filter.benchmarks},
        "documents": {"read": documents.read, "python": documents.python, "syntax_error": documents.syntax_error,
                      "not_python": documents.not_python, "skipped_sources": skipped_sources},
        **funnel.stats(),
        "sft_records": len(verified),
        "dpo": _dpo_stats(pairs, len(verified)),
        "teacher": vars(teacher_counts) if teacher_counts else None,
        "seconds": {**{k: round(v, 2) for k, v in seconds.items()}, "total": round(time.monotonic() - started, 2)},
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _filter(samples: list[Sample], funnel: Funnel, benchmark_filter: BenchmarkFilter) -> list[Sample]:
    """Samples that repeat no earlier one and overlap no benchmark item."""
    dedup, kept = Deduplicator(), []
    for sample in samples:
        repeated = dedup.duplicate_of(sample)
        if repeated:
            funnel.add({}, [Drop(sample.origin, "dedup", "duplicate", repeated)])
            continue
        items = benchmark_filter.matches(sample)
        if items:
            funnel.add({}, [Drop(sample.origin, "decontaminate", "benchmark_overlap", ", ".join(items))])
            continue
        kept.append(sample)
    return kept


def _decontaminate_pairs(pairs: PairRun, benchmark_filter: BenchmarkFilter) -> None:
    """Model answers are new text: a pair whose answers overlap a benchmark item goes."""
    clean = []
    for pair in pairs.pairs:
        items = benchmark_filter.matches_text(f"{pair.chosen}\n{pair.rejected}")
        if items:
            pairs.drops.append(Drop(pair.sample.origin, "dpo", "benchmark_overlap", ", ".join(items)))
        else:
            clean.append(pair)
    pairs.pairs = clean


def _limit(samples: list[Sample], funnel: Funnel, max_problems: int, seed: int) -> list[Sample]:
    """A seeded sample of `max_problems` samples (all when 0), in their original order."""
    if not max_problems or len(samples) <= max_problems:
        return samples
    chosen = set(random.Random(seed).sample(range(len(samples)), max_problems))
    funnel.add({}, [Drop(s.origin, "limit", "max_problems", f"--max-problems {max_problems}")
                    for i, s in enumerate(samples) if i not in chosen])
    return [s for i, s in enumerate(samples) if i in chosen]


def _dpo_stats(pairs: PairRun, problems: int) -> dict:
    """Pairs by source (and mutation operator or where `chosen` came from), problems without a pair."""
    by_source, by_mutation, chosen_from, no_pair = Counter(), Counter(), Counter(), Counter()
    for pair in pairs.pairs:
        by_source[pair.source] += 1
        if "mutation" in pair.details:
            by_mutation[pair.details["mutation"]] += 1
        if "chosen_from" in pair.details:
            chosen_from[pair.details["chosen_from"]] += 1
    no_pair.update(drop.reason for drop in pairs.drops)
    return {"problems": problems, "pairs": len(pairs.pairs), "by_source": dict(by_source),
            "by_mutation": dict(sorted(by_mutation.items())), "chosen_from": dict(chosen_from),
            "no_pair": dict(sorted(no_pair.items())), "unaccounted": problems - len(pairs.pairs) - len(pairs.drops),
            "candidates_run": pairs.candidates_run, "candidates_passed": pairs.candidates_passed}


def _teacher_config(url, model, api_key, modes, problems, temperature, max_tokens, prefix,
                    stop) -> TeacherConfig | None:
    if not url:
        if model:
            raise LingcoderError("--teacher-model given without --teacher-url (the endpoint, e.g. http://host:8000/v1)")
        return None
    if not model:
        raise LingcoderError(f"--teacher-url {url}: also name the model with --teacher-model")
    magpie = {} if prefix is None else {"magpie_prefix": prefix, "magpie_stop": tuple(stop or ())}
    return TeacherConfig(url, model, api_key, tuple(modes or MODES), problems, temperature, max_tokens, **magpie)


def _check_candidates(url, model, checkpoint) -> None:
    if url and checkpoint:
        raise LingcoderError("give --candidates-url or --candidates-checkpoint, not both")
    if url and not model:
        raise LingcoderError(f"--candidates-url {url}: also name the model with --candidates-model")
    if model and not url:
        raise LingcoderError("--candidates-model given without --candidates-url")


def _candidates_backend(url, model, api_key, checkpoint, device, engine="lingcoder"):
    """(backend, name) of the model that answers for preference pairs, or None (mutations). A checkpoint runs
    on `engine`: lingcoder's own, or vLLM's server for the run."""
    if engine not in ("lingcoder", "vllm"):
        raise LingcoderError(f"candidates_engine {engine!r}: unknown (known: lingcoder, vllm)")
    if url:
        from lingcoder.evaluate.backends import OpenAIBackend

        return OpenAIBackend(url, model, api_key=api_key), model
    if checkpoint and engine == "vllm":
        from lingcoder.evaluate.backends import VLLMBackend

        return VLLMBackend(checkpoint), Path(checkpoint).name
    if checkpoint:
        from lingcoder.evaluate.backends import CheckpointBackend

        return CheckpointBackend(checkpoint, device=device), Path(checkpoint).name
    return None
