"""Step 3: PII and secrets are replaced by placeholders, and counted.

Replaced: e-mail addresses (`<EMAIL>`), public IP addresses (`<IP_ADDRESS>`; private, loopback
and reserved ones such as 127.0.0.1 are code, not PII, and stay), cloud and service keys
(`<KEY>`: AWS access key ids, GitHub, Slack, Google API, Stripe and OpenAI-style tokens),
private-key blocks (`<PRIVATE_KEY>`) and high-entropy values assigned to names containing
key/token/secret/password (`<SECRET>`): quoted strings in any file, and in configuration files
(YAML, INI, TOML, .env) also the unquoted values of `KEY=value` / `key: value` lines. The
counts per kind go to the document's `signals.pii` and to the funnel in `stats.json`. Written
here with plain regexes because the patterns are few, must run at lexer speed on every file,
and must report counts per kind.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass

from datatrove.pipeline.base import PipelineStep

# Each pattern is only run where a cheap test says it can match (a literal prefix in the text,
# an `@`, a quoted value): the step has to keep up with the rule filters on every file.
EMAIL_DOMAIN = re.compile(r"@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
EMAIL_LOCAL_PART = re.compile(r"[\w.+-]+$")
IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
SERVICE_KEYS = [  # (literal that must occur, pattern)
    ("AKIA", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),  # AWS access key id
    ("ASIA", re.compile(r"\bASIA[0-9A-Z]{16}\b")),
    ("gh", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),  # GitHub tokens
    ("github_pat_", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b")),
    ("xox", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),  # Slack
    ("AIza", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),  # Google API
    ("k_live_", re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}\b")),  # Stripe
    ("sk-", re.compile(r"\bsk-[A-Za-z0-9_-]{32,}\b")),  # OpenAI-style
]
PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.DOTALL
)
QUOTED_VALUE = re.compile(r"""(["'])([^"'\s]{12,})\1""")
# `[export ]NAME = value` / `name: value` with NAME naming a secret and an unquoted value (to the end
# of the line, a comment or a separator); group 1 is the value.
UNQUOTED_ASSIGNMENT = re.compile(
    r"""^[ \t-]*(?:export[ \t]+)?[\w.-]*(?:key|token|secret|passwd|password|pwd)[\w.-]*[ \t]*[:=][ \t]*"""
    r"""([^\s"'#;,{}\[\]<>]{12,})[ \t]*(?:[#;].*)?$""",
    re.IGNORECASE | re.MULTILINE,
)
CONFIG_LANGUAGES = ("YAML", "INI", "TOML", "Dotenv")
SECRET_NAME_BEFORE = re.compile(
    r"""(?<![\w.-])[\w.-]*(?:key|token|secret|passwd|password|pwd)[\w-]*["']?\s*(?::=|=|:)\s*$""", re.IGNORECASE
)


@dataclass
class PiiConfig:
    """Which kinds are redacted and how random an assigned string must be to count as a secret."""

    redact_emails: bool = True
    redact_ips: bool = True
    redact_keys: bool = True
    min_secret_entropy: float = 3.5  # Shannon bits per character of an assigned key/token/password value
    min_secret_length: int = 12


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _is_public_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


def _replace_spans(text: str, spans: list[tuple[int, int]], placeholder: str) -> str:
    parts, last = [], 0
    for begin, end in spans:
        parts += [text[last:begin], placeholder]
        last = end
    return "".join(parts) + text[last:]


def _email_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in EMAIL_DOMAIN.finditer(text):
        local = EMAIL_LOCAL_PART.search(text, max(0, match.start() - 64), match.start())
        if local and (not spans or local.start() >= spans[-1][1]):
            spans.append((local.start(), match.end()))
    return spans


def _public_ip_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in IPV4.finditer(text):
        begin, end = match.span()
        if (begin and text[begin - 1] in "0123456789.") or (end < len(text) and text[end] in "0123456789."):
            continue  # part of a longer dotted number (a version, an OID)
        if _is_public_ip(match.group(0)):
            spans.append((begin, end))
    return spans


def _secret_spans(text: str, config: PiiConfig) -> list[tuple[int, int]]:
    """Quoted high-entropy values whose left-hand side names a key, token, secret or password."""
    spans = []
    for match in QUOTED_VALUE.finditer(text):
        value = match.group(2)
        if value.startswith("<") or len(value) < config.min_secret_length:
            continue
        if shannon_entropy(value) < config.min_secret_entropy:
            continue
        line_start = text.rfind("\n", 0, match.start()) + 1
        if SECRET_NAME_BEFORE.search(text, max(line_start, match.start() - 120), match.start()):
            spans.append(match.span(2))
    return spans


def _unquoted_secret_spans(text: str, config: PiiConfig) -> list[tuple[int, int]]:
    """Unquoted high-entropy values of configuration lines whose name is a key, token, secret or password."""
    spans = []
    for match in UNQUOTED_ASSIGNMENT.finditer(text):
        value = match.group(1)
        if len(value) >= config.min_secret_length and shannon_entropy(value) >= config.min_secret_entropy:
            spans.append(match.span(1))
    return spans


def redact(text: str, config: PiiConfig, language: str | None = None) -> tuple[str, Counter]:
    """(redacted text, counts per kind); `language` enables the unquoted-value rule of config files."""
    counts: Counter = Counter()

    def apply(kind: str, spans: list[tuple[int, int]], placeholder: str) -> None:
        nonlocal text
        if spans:
            counts[kind] += len(spans)
            text = _replace_spans(text, spans, placeholder)

    if config.redact_keys:
        if "PRIVATE KEY-----" in text:
            apply("private_key", [m.span() for m in PRIVATE_KEY_BLOCK.finditer(text)], "<PRIVATE_KEY>")
        for literal, pattern in SERVICE_KEYS:
            if literal in text:
                apply("key", [m.span() for m in pattern.finditer(text)], "<KEY>")
        apply("secret", _secret_spans(text, config), "<SECRET>")
        if language in CONFIG_LANGUAGES:
            apply("secret", _unquoted_secret_spans(text, config), "<SECRET>")
    if config.redact_emails and "@" in text:
        apply("email", _email_spans(text), "<EMAIL>")
    if config.redact_ips:
        apply("ip_address", _public_ip_spans(text), "<IP_ADDRESS>")
    return text, counts


class PiiRedactor(PipelineStep):
    """Replaces PII and secrets in every document; counts go to `metadata['pii']` and the step stats."""

    type = "🔒 - PII"
    name = "🔒 pii & secrets"

    def __init__(self, config: PiiConfig | None = None):
        super().__init__()
        self.config = config or PiiConfig()

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            with self.track_time():
                doc.text, counts = redact(doc.text, self.config, doc.metadata.get("language"))
                doc.metadata["pii"] = dict(counts)
                for kind, n in counts.items():
                    self.stat_update(f"redacted_{kind}", value=n)
            yield doc
