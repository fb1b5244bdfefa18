"""Step 3: PII and secrets are replaced by placeholders, and counted.

Replaced: e-mail addresses (`<EMAIL>`), public IP addresses (`<IP_ADDRESS>`; private, loopback
and reserved ones such as 127.0.0.1 are code, not PII, and stay), cloud and service keys
(`<KEY>`: AWS access key ids, GitHub, Slack, Google API, Stripe and OpenAI-style tokens),
private-key blocks (`<PRIVATE_KEY>`) and high-entropy strings assigned to names containing
key/token/secret/password (`<SECRET>`). The counts per kind go to the document's
`signals.pii` and to the funnel in `stats.json`. Written here with plain regexes because the
patterns are few, must run at lexer speed on every file, and must report counts per kind.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass

from datatrove.pipeline.base import PipelineStep

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
SERVICE_KEYS = re.compile(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b"  # GitHub token
    r"|\bgithub_pat_[A-Za-z0-9_]{40,}\b"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}\b"  # Slack token
    r"|\bAIza[0-9A-Za-z_-]{35}\b"  # Google API key
    r"|\b[sr]k_live_[0-9A-Za-z]{20,}\b"  # Stripe secret key
    r"|\bsk-[A-Za-z0-9_-]{32,}\b"  # OpenAI-style secret key
)
PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.DOTALL
)
ASSIGNED_SECRET = re.compile(
    r"""(?P<name>[A-Za-z_][\w.-]*(?:key|token|secret|passwd|password|pwd)[\w-]*)["']?\s*(?::=|=|:)\s*"""
    r"""(?P<quote>["'])(?P<value>[^"'\s]{12,})(?P=quote)""",
    re.IGNORECASE,
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


def redact(text: str, config: PiiConfig) -> tuple[str, Counter]:
    """(redacted text, counts per kind)."""
    counts: Counter = Counter()

    def sub(pattern, placeholder, kind, text, keep=lambda m: False):
        def replace(match):
            if keep(match):
                return match.group(0)
            counts[kind] += 1
            return placeholder

        return pattern.sub(replace, text)

    if config.redact_keys:
        if "PRIVATE KEY-----" in text:
            text = sub(PRIVATE_KEY_BLOCK, "<PRIVATE_KEY>", "private_key", text)
        text = sub(SERVICE_KEYS, "<KEY>", "key", text)

        def not_secret(match):
            value = match.group("value")
            return (
                value.startswith("<")
                or len(value) < config.min_secret_length
                or shannon_entropy(value) < config.min_secret_entropy
            )

        def replace_value(match):
            if not_secret(match):
                return match.group(0)
            counts["secret"] += 1
            start, end = match.span("value")
            return (
                match.group(0)[: start - match.start()] + "<SECRET>" + match.group(0)[end - match.start() :]
            )

        text = ASSIGNED_SECRET.sub(replace_value, text)
    if config.redact_emails and "@" in text:
        text = sub(EMAIL, "<EMAIL>", "email", text)
    if config.redact_ips:
        text = sub(IPV4, "<IP_ADDRESS>", "ip_address", text, keep=lambda m: not _is_public_ip(m.group(0)))
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
                doc.text, counts = redact(doc.text, self.config)
                doc.metadata["pii"] = dict(counts)
                for kind, n in counts.items():
                    self.stat_update(f"redacted_{kind}", value=n)
            yield doc
