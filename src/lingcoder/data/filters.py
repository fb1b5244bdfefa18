"""Step 1 (decoding and size) and step 2 (rule filters after StarCoder / The Stack, plus the Ling
extras, docs/pipeline.md). One class per rule; every threshold is a named field of
`RuleThresholds` and every drop carries a reason and a detail with the measured value.

Reasons: `decode_size`: the reader's problems (`unreadable`, `vanished`, `symlink`,
`not_regular_file`, `ignored_dir`, `binary`, `invalid_utf8`, `too_large`, `malformed_record`,
`corrupt_parquet`) and `empty`. Rules: `garbled_text`, `max_line_length`, `mean_line_length`,
`alphanumeric_fraction`, `auto_generated`, `encoded_data`, `xml_content`, `html_visible_text`,
`too_many_comments`, `too_few_comments`, `too_few_code_lines`, `url_ip_heavy`,
`contact_date_heavy`, `line_repetition`, `word_duplication`.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass
from html.parser import HTMLParser

import numpy as np
from datatrove.data import Document

from lingcoder.data.clones import cached_word_shingles
from lingcoder.data.code_lines import count_lines
from lingcoder.data.language import CODE, kind_of
from lingcoder.data.steps import CurationFilter


@dataclass
class RuleThresholds:
    """Thresholds of the rule filters; defaults follow StarCoder / The Stack and the Ling paper."""

    max_file_bytes: int = 1_000_000  # decode_size: larger files are not even read
    max_garbled_fraction: float = 0.001  # mojibake, control and U+FFFD characters per character of text
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alphanumeric_fraction: float = 0.25
    autogen_header_lines: int = 5  # look for "generated ... do not edit" markers in these lines
    encoded_max_fraction: float = 0.5  # base64 / hex / \u-escape runs over this share of the text
    encoded_max_run: int = 1024  # ... or any single run longer than this many characters
    html_min_visible_fraction: float = 0.2
    html_min_visible_chars: int = 100
    max_comment_ratio: float = 0.8  # comment lines / non-blank lines, code files
    min_comment_ratio: float = 0.01
    min_comment_ratio_lines: int = 50  # the lower bound only applies to files with this many code lines
    min_effective_lines: int = 3  # non-blank, non-comment lines, code files
    max_url_ip_fraction: float = 0.6
    max_contact_date_fraction: float = 0.5
    max_line_repetition: float = 0.7  # share of non-blank lines repeating an earlier line
    max_word_duplication: float = 0.7  # share of word 5-grams repeating an earlier one
    repetition_min_lines: int = 10  # repetition rules need this many non-blank lines


class DecodeSizeFilter(CurationFilter):
    """Drops what the reader could not turn into text (with its reason) and empty files."""

    step = "decode_size"
    name = "📏 decode & size"

    def filter(self, doc: Document):
        problem = doc.metadata.get("read_problem")
        if problem:
            return self.drop(doc, problem, doc.metadata.get("read_detail", ""))
        if not doc.text.strip():
            return self.drop(doc, "empty", f"{doc.metadata['size_bytes']} bytes of whitespace")
        return True


class RuleFilter(CurationFilter):
    """Base of the rule filters: holds the thresholds, optionally only for code files."""

    step = "rules"
    code_only = False

    def __init__(self, thresholds: RuleThresholds | None = None, **kwargs):
        super().__init__(**kwargs)
        self.t = thresholds or RuleThresholds()

    def filter(self, doc: Document):
        if self.code_only and kind_of(doc.metadata.get("language")) != CODE:
            return True
        return self.check(doc)

    @abstractmethod
    def check(self, doc: Document):
        """(keep, reason) for one code document; each rule class implements it."""


# Text that was decoded with the wrong codec, or never was text: C0/C1 control characters other
# than tab, newline, carriage return and form feed; U+FFFD (a decoder already gave up); and
# mojibake, UTF-8 read as Latin-1 or Windows-1252: a lead byte shown as Â/Ã/Å/Ä/â/ð followed by
# continuation bytes shown as Latin-1 punctuation or C1 controls (e.g. "Ã©" for "é", "â€™" for "’").
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd]")
MOJIBAKE = re.compile(r"[\u00c2-\u00c5\u00e2\u00f0][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e"
                      r"\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
                      r"\u20ac\u2122]+")
ASCII_CONTROL = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])


def garbled_chars(text: str) -> int:
    """Characters of `text` that are control characters, U+FFFD or part of a mojibake sequence."""
    if text.isascii():
        raw = text.encode("ascii")
        return len(raw) - len(raw.translate(None, ASCII_CONTROL))
    return sum(map(len, CONTROL_CHARS.findall(text))) + sum(map(len, MOJIBAKE.findall(text)))


class GarbledTextFilter(RuleFilter):
    """Valid UTF-8 that is still not text: mojibake, control characters, replacement characters."""

    name = "🔣 garbled text"

    def check(self, doc):
        garbled = garbled_chars(doc.text)
        fraction = garbled / len(doc.text)
        if fraction > self.t.max_garbled_fraction:
            return self.drop(
                doc, "garbled_text", f"{garbled} garbled chars, {fraction:.4f} > {self.t.max_garbled_fraction}"
            )
        return True


class LineLengthFilter(RuleFilter):
    name = "📐 line length"

    def check(self, doc):
        lengths = [len(line) for line in doc.text.splitlines()] or [0]
        longest = max(lengths)
        if longest > self.t.max_line_length:
            return self.drop(doc, "max_line_length", f"{longest} > {self.t.max_line_length}")
        mean = sum(lengths) / len(lengths)
        if mean > self.t.max_mean_line_length:
            return self.drop(doc, "mean_line_length", f"{mean:.1f} > {self.t.max_mean_line_length}")
        return True


ALNUM_RUNS = re.compile(r"[^\W_]+")
ASCII_ALNUM = bytes(c for c in range(128) if chr(c).isalnum())


def alphanumeric_count(text: str) -> int:
    """Letters and digits in `text` (a C-speed byte translation for ASCII text)."""
    if text.isascii():
        raw = text.encode("ascii")
        return len(raw) - len(raw.translate(None, ASCII_ALNUM))
    return sum(map(len, ALNUM_RUNS.findall(text)))


class AlphanumericFilter(RuleFilter):
    name = "🔡 alphanumeric"

    def check(self, doc):
        text = doc.text
        fraction = alphanumeric_count(text) / len(text)
        if fraction < self.t.min_alphanumeric_fraction:
            return self.drop(
                doc, "alphanumeric_fraction", f"{fraction:.3f} < {self.t.min_alphanumeric_fraction}"
            )
        return True


AUTOGEN_MARKERS = re.compile(
    r"auto-?generated|automatically generated|generated automatically|generated by|"
    r"this file (?:is|was) generated|do not edit|don't edit|code generated",
    re.IGNORECASE,
)
AUTOGEN_NAMES = re.compile(
    r"(?:_pb2(?:_grpc)?\.pyi?|\.pb\.(?:go|cc|h)|\.g\.dart|\.designer\.cs|\.min\.(?:js|css))$"
)


class AutogeneratedFilter(RuleFilter):
    """Generated files: a marker in the first lines, or a generator's file name (`*_pb2.py`, ...)."""

    name = "🤖 auto-generated"

    def check(self, doc):
        path = doc.metadata["path"]
        if AUTOGEN_NAMES.search(path):
            return self.drop(doc, "auto_generated", f"file name {path.rsplit('/', 1)[-1]}")
        head = "\n".join(doc.text.splitlines()[: self.t.autogen_header_lines])
        match = AUTOGEN_MARKERS.search(head)
        if match:
            return self.drop(doc, "auto_generated", f"header says {match.group(0)!r}")
        return True


# Runs of encoded data. Each regex only runs when a cheap necessary condition holds (a long
# whitespace-free token, many `0x`/`\\x` prefixes, many `\\u` escapes): this keeps the step fast.
BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{64,}={0,2}")
HEX_RUN = re.compile(r"(?:(?:0x|\\x)[0-9A-Fa-f]{2}[,\s]*){32,}")
UNICODE_ESCAPE_RUN = re.compile(r"(?:\\u[0-9A-Fa-f]{4}){8,}")


def encoded_runs(text: str) -> list[int]:
    """Lengths of the base64, hex-byte and \\u-escape runs in `text`."""
    runs = []
    if any(len(token) >= 64 for token in text.split()):
        runs += [len(m) for m in BASE64_RUN.findall(text)]
    if text.count("0x") + text.count("\\x") >= 32:
        runs += [len(m) for m in HEX_RUN.findall(text)]
    if text.count("\\u") >= 8:
        runs += [len(m) for m in UNICODE_ESCAPE_RUN.findall(text)]
    return runs


class EncodedDataFilter(RuleFilter):
    """Long base64, hex-byte or \\u-escape runs: data pasted into source, not code."""

    name = "🧬 encoded data"

    def check(self, doc):
        runs = encoded_runs(doc.text)
        total, longest = sum(runs), max(runs, default=0)
        if longest > self.t.encoded_max_run:
            return self.drop(doc, "encoded_data", f"run of {longest} chars > {self.t.encoded_max_run}")
        if total > self.t.encoded_max_fraction * len(doc.text):
            return self.drop(doc, "encoded_data", f"{total / len(doc.text):.2f} of the text")
        return True


class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._hidden += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.chunks.append(data.strip())


class XmlHtmlFilter(RuleFilter):
    """StarCoder's XML rule (an XML prolog in a non-XML file) and HTML rule (too little visible text)."""

    name = "🏷️ xml/html"

    def check(self, doc):
        language = doc.metadata.get("language")
        if language != "XML" and "<?xml version=" in doc.text[:100]:
            return self.drop(doc, "xml_content", "XML prolog in the first 100 characters")
        if language == "HTML":
            parser = _VisibleText()
            parser.feed(doc.text)
            parser.close()
            visible = sum(len(c) for c in parser.chunks)
            if visible < self.t.html_min_visible_chars or visible < self.t.html_min_visible_fraction * len(
                doc.text
            ):
                return self.drop(doc, "html_visible_text", f"{visible} visible chars of {len(doc.text)}")
        return True


def cached_line_counts(doc: Document):
    """Line counts of `doc`, computed once and kept in its metadata (also read by the quality step)."""
    counts = doc.metadata.get("_line_counts")
    if counts is None:
        counts = doc.metadata["_line_counts"] = count_lines(doc.text, doc.metadata["language"])
    return counts


class CommentRatioFilter(RuleFilter):
    """Comment lines over non-blank lines must lie within the bounds (code files)."""

    name = "💬 comment ratio"
    code_only = True

    def check(self, doc):
        counts = cached_line_counts(doc)
        ratio = counts.comment_ratio
        if ratio > self.t.max_comment_ratio:
            return self.drop(doc, "too_many_comments", f"{ratio:.2f} > {self.t.max_comment_ratio}")
        if counts.code >= self.t.min_comment_ratio_lines and ratio < self.t.min_comment_ratio:
            return self.drop(doc, "too_few_comments", f"{ratio:.3f} < {self.t.min_comment_ratio}")
        return True


class EffectiveLinesFilter(RuleFilter):
    """At least `min_effective_lines` lines that are neither blank nor comments (code files)."""

    name = "📃 effective lines"
    code_only = True

    def check(self, doc):
        code = cached_line_counts(doc).code
        if code < self.t.min_effective_lines:
            return self.drop(doc, "too_few_code_lines", f"{code} < {self.t.min_effective_lines}")
        return True


URL = re.compile(r"(?:https?|ftp)://[^\s\"'<>()]+|www\.[^\s\"'<>()]+")
IP_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
EMAIL_DOMAIN = re.compile(r"@[\w-]+\.[\w.-]*\w")
EMAIL_LOCAL_PART = re.compile(r"[\w.+-]+$")
PHONE_OR_DATE = re.compile(
    r"(?<![\w+])\+?\d{1,3}[-. ]?\(?\d{2,4}\)?[-. ]\d{3,4}[-. ]\d{3,4}"  # phone
    r"|\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"  # date(-time)
)
# An IP address has at most 15 characters for 4 digits, a phone number or a date at most 3
# characters per digit: so `4 * digits` bounds their share and the regexes only run when needed.
CHARS_PER_DIGIT_BOUND = 4


def count_digits(text: str) -> int:
    return sum(text.count(d) for d in "0123456789")


def url_chars(text: str) -> int:
    if "://" not in text and "www." not in text:
        return 0
    return sum(map(len, URL.findall(text)))


def email_chars(text: str) -> int:
    """Characters of e-mail addresses, searched from each `@domain.tld` backwards."""
    total = 0
    for match in EMAIL_DOMAIN.finditer(text):
        local = EMAIL_LOCAL_PART.search(text, max(0, match.start() - 64), match.start())
        if local:
            total += match.end() - local.start()
    return total


class UrlIpFilter(RuleFilter):
    """Ling extra: URLs and IP addresses must not make up more than 60% of the content."""

    name = "🔗 urls & ips"

    def check(self, doc):
        text, limit = doc.text, self.t.max_url_ip_fraction * len(doc.text)
        chars = url_chars(text)
        digit_bound = CHARS_PER_DIGIT_BOUND * count_digits(text)
        if chars + digit_bound <= limit:
            return True
        fraction = (chars + sum(map(len, IP_ADDRESS.findall(text)))) / len(text)
        if fraction > self.t.max_url_ip_fraction:
            return self.drop(doc, "url_ip_heavy", f"{fraction:.2f} > {self.t.max_url_ip_fraction}")
        return True


class ContactDateFilter(RuleFilter):
    """Ling extra: e-mails, phone numbers and dates must not make up more than 50% of the content."""

    name = "📇 contacts & dates"

    def check(self, doc):
        text, limit = doc.text, self.t.max_contact_date_fraction * len(doc.text)
        chars = email_chars(text)
        if chars + CHARS_PER_DIGIT_BOUND * count_digits(text) <= limit:
            return True
        fraction = (chars + sum(map(len, PHONE_OR_DATE.findall(text)))) / len(text)
        if fraction > self.t.max_contact_date_fraction:
            return self.drop(
                doc, "contact_date_heavy", f"{fraction:.2f} > {self.t.max_contact_date_fraction}"
            )
        return True


class RepetitionFilter(RuleFilter):
    """Ling extra: inter-line repetition or word duplication above 70%.

    Line repetition: share of non-blank lines equal (after stripping) to an earlier line.
    Word duplication: share of word 5-grams (lower-cased, hashed: the MinHash step's shingles,
    computed once) equal to an earlier word 5-gram.
    """

    name = "🔁 repetition"

    def check(self, doc):
        lines = [line.strip() for line in doc.text.splitlines() if line.strip()]
        if len(lines) < self.t.repetition_min_lines:
            return True
        repeated = len(lines) - len(set(lines))
        if repeated / len(lines) > self.t.max_line_repetition:
            return self.drop(
                doc, "line_repetition", f"{repeated / len(lines):.2f} > {self.t.max_line_repetition}"
            )
        grams = cached_word_shingles(doc, 5)
        if len(grams):
            duplicated = 1 - len(np.unique(grams)) / len(grams)
            if duplicated > self.t.max_word_duplication:
                return self.drop(doc, "word_duplication", f"{duplicated:.2f} > {self.t.max_word_duplication}")
        return True


def rule_filters(thresholds: RuleThresholds, out_dir: str | None) -> list[RuleFilter]:
    """The rule filters in pipeline order, all writing drops under step `rules`."""
    classes = (
        GarbledTextFilter,
        LineLengthFilter,
        AlphanumericFilter,
        AutogeneratedFilter,
        EncodedDataFilter,
        XmlHtmlFilter,
        CommentRatioFilter,
        EffectiveLinesFilter,
        UrlIpFilter,
        ContactDateFilter,
        RepetitionFilter,
    )
    return [cls(thresholds, out_dir=out_dir) for cls in classes]
