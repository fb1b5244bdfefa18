"""Preference pairs from execution feedback: chosen passes the problem's tests, rejected fails them.

Two sources of candidate answers, both executed in the sandbox (no reward model):
- `model_pairs`: a model (checkpoint or OpenAI-compatible endpoint) answers each verified problem
  n times at temperature > 0; chosen = its first passing answer, else the verified reference
  answer; rejected = its first failing answer.
- `mutation_pairs` (when no model is given): single-edit mutants of the verified solution
  (mutations.py), a seeded sample of `tries` per problem; rejected = the first one, in that order,
  that the sandbox shows to fail (failed, timeout or error); chosen = the reference answer.
Mutants run under an adaptive limit: ten times the reference's own run time, at least 2 s, at most
the configured timeout, so a mutant that loops costs little.
A problem without a pair is accounted for with its reason (stage `dpo`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lingcoder.evaluate.execution import Verdict
from lingcoder.evaluate.prompts import extract_code
from lingcoder.evaluate.sandbox import Sandbox
from lingcoder.generation.sampling import SamplingParams
from lingcoder.synth.calls import ask_each
from lingcoder.synth.mutations import mutants
from lingcoder.synth.samples import Drop, Sample, fenced
from lingcoder.synth.verify import run_all

FAILING = ("failed", "timeout", "error")


@dataclass(frozen=True)
class Pair:
    """One preference pair and how it was made (`source`: mutation or model, with details)."""

    sample: Sample
    chosen: str
    rejected: str
    source: str
    rejected_verdict: str
    details: dict = field(default_factory=dict)


@dataclass
class PairRun:
    """Pairs, problems without one, and how many candidate answers were executed (and passed)."""

    pairs: list[Pair] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    candidates_run: int = 0
    candidates_passed: int = 0


def mutation_pairs(samples: list[Sample], reference_seconds: list[float], *, tries: int, seed: int, workers: int,
                   timeout: float, sandbox: Sandbox) -> PairRun:
    """One pair per problem whose seeded mutants include one that fails its tests."""
    run = PairRun()
    chosen_mutants = []
    for sample in samples:
        found = mutants(sample.solution, sample.entry_point or None)
        random.Random(f"{seed}:{sample.mid}").shuffle(found)
        chosen_mutants.append(found[:tries])
    programs = [(m.code, s.tests) for s, ms in zip(samples, chosen_mutants, strict=True) for m in ms]
    limits = [min(timeout, max(2.0, 10 * secs))
              for secs, ms in zip(reference_seconds, chosen_mutants, strict=True) for _ in ms]
    verdicts = iter(run_all(programs, workers=workers, timeout=limits, sandbox=sandbox))
    for sample, tried in zip(samples, chosen_mutants, strict=True):
        results = [(m, next(verdicts)) for m in tried]
        run.candidates_run += len(results)
        run.candidates_passed += sum(v.passed for _, v in results)
        failing = [(m, v) for m, v in results if v.status in FAILING]
        if not tried:
            run.drops.append(Drop(sample.origin, "dpo", "no_mutation_site", "no operator applies to the function"))
        elif not failing:
            run.drops.append(Drop(sample.origin, "dpo", "mutants_pass",
                                  f"all {len(tried)} mutants tried pass the tests (the tests miss them)"))
        else:
            mutant, verdict = failing[0]
            run.pairs.append(Pair(sample, sample.answer, fenced(mutant.code), "mutation", _describe(verdict),
                                  {"mutation": mutant.operator, "mutation_line": mutant.line}))
    return run


def model_pairs(samples: list[Sample], backend, model_name: str, *, n: int, temperature: float, max_tokens: int,
                seed: int, workers: int, timeout: float, sandbox: Sandbox) -> PairRun:
    """One pair per problem where the model's n sampled answers include a failing one."""
    run = PairRun()
    settings = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    answers = ask_each(backend, "chat", [[{"role": "user", "content": s.prompt}] for s in samples], settings)
    programs = [(extract_code(a, "python"), s.tests)
                for s, texts in zip(samples, answers, strict=True) if isinstance(texts, list) for a in texts]
    verdicts = iter(run_all(programs, workers=workers, timeout=timeout, sandbox=sandbox))
    for sample, texts in zip(samples, answers, strict=True):
        if isinstance(texts, str):
            run.drops.append(Drop(sample.origin, "dpo", "request_failed", texts[:300]))
            continue
        results = [(a, next(verdicts)) for a in texts]
        run.candidates_run += len(results)
        passing = [a for a, v in results if v.passed]
        run.candidates_passed += len(passing)
        failing = [(a, v) for a, v in results if v.status in FAILING]
        if not failing:
            reason = "no_failing_answer" if passing else "no_judged_answer"
            run.drops.append(Drop(sample.origin, "dpo", reason, f"{len(passing)}/{len(results)} answers passed"))
            continue
        rejected, verdict = failing[0]
        chosen = passing[0] if passing else sample.answer
        run.pairs.append(Pair(sample, chosen, rejected, "model", _describe(verdict), {
            "model": model_name, "chosen_from": "model" if passing else "reference",
            "answers": len(results), "answers_passed": len(passing)}))
    return run


def _describe(verdict: Verdict) -> str:
    """The verdict in a record; a timeout without its limit, which depends on measured run times."""
    return f"{verdict.status}: {verdict.error}" if verdict.error and verdict.status != "timeout" else verdict.status
