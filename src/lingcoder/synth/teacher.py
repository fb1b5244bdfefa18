"""Problems written by a teacher model (any OpenAI-compatible endpoint: vLLM, `lingcoder serve`).

Two generators (docs/pipeline.md, "Synthetic data"), each attempt a candidate accounted for in the funnel:
- `magpie`: the teacher's chat template up to the start of a user turn goes to /v1/completions,
  so the model writes the user's question itself (Ling's template by default; for another teacher
  pass its own, e.g. `<|im_start|>user\n` with stop `<|im_end|>`); the question is then sent as a chat turn and the
  teacher answers with a solution and tests in the strict format of `parsing.reply_format`.
- `evolved`: seed -> knowledge point -> evolved problem. A seed is a documented function of the
  curated corpus; the teacher names its knowledge point, then writes a new, harder problem on that
  point, with solution and tests.
Malformed replies are dropped at stage `teacher` with the parser's reason; the rest go on to
deduplication, decontamination and verification like mined samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lingcoder.errors import LingcoderError
from lingcoder.generation.chat_template import CHAT_STOPS
from lingcoder.generation.sampling import SamplingParams
from lingcoder.synth.calls import ask_each
from lingcoder.synth.mining import Seed
from lingcoder.synth.parsing import (
    ParseError,
    parse_knowledge_point,
    parse_problem_reply,
    parse_question,
    reply_format,
)
from lingcoder.synth.samples import REPLY_FORMAT, Drop, Origin, Sample, SourceOutput

MODES = ("magpie", "evolved")
LING_MAGPIE_PREFIX = (
    "<role>SYSTEM</role>You are an expert Python programmer. Users ask you self-contained Python "
    "programming questions.<role>HUMAN</role>"
)
MAX_SEED_CHARS = 3000
MAGPIE_PER_REQUEST = 16


@dataclass
class TeacherConfig:
    """The endpoint and how much to ask of it (`problems` attempts per mode)."""

    url: str
    model: str
    api_key: str | None = None
    modes: tuple[str, ...] = MODES
    problems: int = 16
    temperature: float = 0.8
    max_tokens: int = 1024
    magpie_prefix: str = LING_MAGPIE_PREFIX
    magpie_stop: tuple[str, ...] = CHAT_STOPS

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(MODES)
        if unknown or not self.modes:
            raise LingcoderError(f"teacher modes {list(self.modes)}: choose from {', '.join(MODES)}")
        if self.problems < 1:
            raise LingcoderError(f"teacher problems={self.problems}: must be >= 1")
        if self.temperature <= 0:
            raise LingcoderError(f"teacher temperature={self.temperature}: must be > 0 (questions must differ)")


@dataclass
class TeacherCounts:
    """Requests sent (by endpoint) and replies that could not be read (by parser reason)."""

    requests: dict[str, int] = field(default_factory=lambda: {"completions": 0, "chat": 0})
    failed_requests: int = 0
    parse_failures: dict[str, int] = field(default_factory=dict)


class Teacher:
    """Asks a backend (`complete` / `chat`, e.g. `OpenAIBackend`) for problems; counts everything."""

    def __init__(self, backend, config: TeacherConfig, seed: int) -> None:
        self.backend, self.config, self.seed = backend, config, seed
        self.counts = TeacherCounts()

    def generate(self, seeds: list[Seed]) -> SourceOutput:
        batch = SourceOutput()
        if "magpie" in self.config.modes:
            batch.extend(self.magpie())
        if "evolved" in self.config.modes:
            batch.extend(self.evolved(seeds))
        return batch

    def magpie(self) -> SourceOutput:
        batch = SourceOutput(seen={"magpie": self.config.problems})
        origins = [Origin("magpie", f"magpie #{i}") for i in range(self.config.problems)]
        texts = []
        for start in range(0, self.config.problems, MAGPIE_PER_REQUEST):  # n samples per request, seeded apart
            n = min(MAGPIE_PER_REQUEST, self.config.problems - start)
            settings = self._settings(n=n, stop=self.config.magpie_stop, seed=self.seed + start)
            texts += [[text] for text in self._ask("complete", [self.config.magpie_prefix], settings)[0]]
        questions = [self._read(batch, o, text, parse_question) for o, text in zip(origins, texts, strict=True)]
        asked = [(o, q) for o, q in zip(origins, questions, strict=True) if q is not None]
        answers = self._ask("chat", [[_user(f"{q}\n\n{reply_format(False)}")] for _, q in asked],
                            self._settings(temperature=0.0))
        for (origin, question), answer in zip(asked, answers, strict=True):
            parsed = self._read(batch, origin, answer, lambda text, q=question: parse_problem_reply(text, problem=q))
            if parsed is not None:
                batch.samples.append(_sample(origin, parsed, "magpie"))
        return batch

    def evolved(self, seeds: list[Seed]) -> SourceOutput:
        chosen = random.Random(self.seed).sample(seeds, min(self.config.problems, len(seeds)))
        batch = SourceOutput(seen={"evolved": len(chosen)})
        origins = [Origin("evolved", f"evolved #{i} from {s.origin.where}") for i, s in enumerate(chosen)]
        asks = [[_user(f"Here is a piece of Python code:\n\n```python\n{s.code[:MAX_SEED_CHARS]}\n```\n\n"
                       "Name the single most important programming knowledge point (a concept, algorithm or "
                       "library technique) it uses. Answer with one line: `Knowledge point: <the point>`.")]
                for s in chosen]
        replies = self._ask("chat", asks, self._settings())
        points = [self._read(batch, o, r, parse_knowledge_point) for o, r in zip(origins, replies, strict=True)]
        asked = [(o, p) for o, p in zip(origins, points, strict=True) if p is not None]
        asks = [[_user(f"Write a new, self-contained Python programming problem that exercises this knowledge "
                       f"point: {p}. Make it harder than a textbook exercise by adding a constraint or an edge "
                       f"case to handle. Then solve it and test the solution.\n\n{reply_format(True)}")]
                for _, p in asked]
        replies = self._ask("chat", asks, self._settings())
        for (origin, _), reply in zip(asked, replies, strict=True):
            parsed = self._read(batch, origin, reply, parse_problem_reply)
            if parsed is not None:
                batch.samples.append(_sample(origin, parsed, "evolved"))
        return batch

    def _settings(self, n: int = 1, temperature: float | None = None, stop: tuple[str, ...] = (),
                  seed: int | None = None) -> SamplingParams:
        temperature = self.config.temperature if temperature is None else temperature
        return SamplingParams(n=n, temperature=temperature, max_tokens=self.config.max_tokens, stop=stop,
                                  seed=self.seed if seed is None else seed)

    def _ask(self, kind: str, items: list, settings: SamplingParams) -> list[list[str] | str]:
        self.counts.requests["completions" if kind == "complete" else "chat"] += len(items)
        return ask_each(self.backend, kind, items, settings)

    def _read(self, batch: SourceOutput, origin: Origin, reply: list[str] | str, parse):
        """parse(the reply's text), or None after recording why the attempt is dropped."""
        if isinstance(reply, str):
            self.counts.failed_requests += 1
            batch.drops.append(Drop(origin, "teacher", "request_failed", reply[:300]))
            return None
        try:
            return parse(reply[0])
        except ParseError as exc:
            self.counts.parse_failures[exc.reason] = self.counts.parse_failures.get(exc.reason, 0) + 1
            batch.drops.append(Drop(origin, "teacher", exc.reason, f"{exc}; reply starts {reply[0][:120]!r}"))
            return None


def _user(content: str) -> dict:
    return {"role": "user", "content": content}


def _sample(origin: Origin, parsed, mode: str) -> Sample:
    prompt = f"{parsed.problem}\n\n{REPLY_FORMAT}"
    return Sample(origin, prompt, parsed.solution, parsed.tests, ("synthetic", "teacher", mode), parsed.entry_point)
