"""Step 6: program-analysis quality signals and the transparent 0-100 quality score.

Signals per file (stored as the `signals` JSON column), from the file's one parse (syntax.py:
Python `ast`, other languages tree-sitter): `syntax_valid` (null without a grammar),
`comment_ratio` (comment lines from the parse where it has them, else from code_lines),
`effective_lines`, `functions`, `classes`, `docstring_coverage`, `max_nesting`, `imports` (how
many), `pii` counts and, with a classifier, `classifier_prob`. The import specifiers themselves
go to the document's `imports` metadata for the repository import graph.

Score (code files), the sum of these points:
- syntax: 30 if it parses, 15 if unknown, 0 if not;
- comments: 15 when `comment_ratio` is within [0.05, 0.6], linearly less outside;
- size: 15 * min(1, effective_lines / 20);
- structure: 10 if the file defines a function or class;
- documentation: 15 * docstring_coverage (7.5 when there is nothing to document);
- nesting: 15 up to depth 4, minus 3 per level deeper.
Markup and config files score 40 (kept, but never high quality). With a classifier the score is
`(1 - classifier_weight) * rules + classifier_weight * 100 * probability`. Files scoring at least
`high_quality_threshold` go to the high-quality output, the rest to the low-quality output.
"""

from __future__ import annotations

from dataclasses import dataclass

from datatrove.pipeline.base import PipelineStep

from lingcoder.data.classifier import QualityClassifier
from lingcoder.data.filters import cached_line_counts
from lingcoder.data.language import CODE, kind_of
from lingcoder.data.syntax import Structure, analyse

NON_CODE_SCORE = 40.0


@dataclass
class QualityConfig:
    high_quality_threshold: float = 88.0  # about the top quarter of the default corpus
    classifier_path: str = ""  # a model saved by QualityClassifier.save; "" = rules only
    classifier_weight: float = 0.5
    max_analysis_bytes: int = 300_000  # larger files are not parsed (syntax_valid stays null)


def rule_score(signals: dict) -> float:
    valid = signals["syntax_valid"]
    points = 30.0 if valid else 15.0 if valid is None else 0.0
    ratio = signals["comment_ratio"]
    if ratio < 0.05:
        points += 15 * ratio / 0.05
    elif ratio > 0.6:
        points += 15 * max(0.0, 1 - (ratio - 0.6) / 0.4)
    else:
        points += 15
    points += 15 * min(1.0, signals["effective_lines"] / 20)
    points += 10 if signals["functions"] + signals["classes"] else 0
    coverage = signals["docstring_coverage"]
    points += 7.5 if coverage is None else 15 * coverage
    points += max(0.0, 15 - 3 * max(0, signals["max_nesting"] - 4))
    return round(points, 2)


def cached_structure(doc, max_bytes: int) -> Structure | None:
    """The parse of `doc` (None for a file over `max_bytes`), done once and kept in its metadata."""
    if "_structure" not in doc.metadata:
        text, meta = doc.text, doc.metadata
        doc.metadata["_structure"] = (
            analyse(text, meta["language"], meta["path"]) if len(text) <= max_bytes else None
        )
    return doc.metadata["_structure"]


def code_signals(structure: Structure | None, counts) -> dict:
    comment_ratio = counts.comment_ratio
    if structure is not None and structure.comment_lines is not None and counts.non_blank:
        comment_ratio = min(1.0, structure.comment_lines / counts.non_blank)
    return {
        "syntax_valid": structure.syntax_valid if structure else None,
        "comment_ratio": round(comment_ratio, 4),
        "effective_lines": counts.code,
        "functions": structure.functions if structure else 0,
        "classes": structure.classes if structure else 0,
        "docstring_coverage": None
        if not structure or structure.docstring_coverage is None
        else round(structure.docstring_coverage, 4),
        "max_nesting": structure.max_nesting if structure else 0,
        "imports": len(structure.imports) if structure else 0,
    }


class QualityAnnotator(PipelineStep):
    """Adds `signals` and `score` to every document's metadata; drops nothing."""

    type = "📊 - QUALITY"
    name = "📊 quality"

    def __init__(self, config: QualityConfig | None = None):
        super().__init__()
        self.config = config or QualityConfig()
        self._classifier: QualityClassifier | None = None

    def run(self, data, rank: int = 0, world_size: int = 1):
        if self.config.classifier_path:
            self._classifier = QualityClassifier.load(self.config.classifier_path)
        for doc in data:
            with self.track_time():
                self.annotate(doc)
            yield doc

    def annotate(self, doc) -> None:
        meta = doc.metadata
        counts = cached_line_counts(doc)
        if kind_of(meta["language"]) == CODE:
            structure = cached_structure(doc, self.config.max_analysis_bytes)
            signals = code_signals(structure, counts)
            meta["imports"] = structure.imports if structure else []
            score = rule_score(signals)
        else:
            signals = {"comment_ratio": round(counts.comment_ratio, 4), "effective_lines": counts.code}
            score = NON_CODE_SCORE
        if self._classifier is not None:
            prob = self._classifier.probability(doc.text)
            signals["classifier_prob"] = round(prob, 4)
            weight = self.config.classifier_weight
            score = round((1 - weight) * score + weight * 100 * prob, 2)
        signals["pii"] = meta.get("pii", {})
        meta["signals"], meta["score"] = signals, score
        self.stat_update("high_quality" if score >= self.config.high_quality_threshold else "low_quality")
