"""Make text safe to log or return: no URLs, signatures, keys, tokens or known secrets.

The Alibaba SDK puts signed URLs into its exception text and ECS echoes the string it
signed in SignatureDoesNotMatch; credentials register their secret values here when they
are loaded, so even a secret quoted somewhere unexpected is masked.
"""

from __future__ import annotations

import re
import threading

_SENSITIVE_KEYS = (
    "AccessKeyId|AccessKeySecret|SecurityToken|Signature|SignatureNonce|"
    "x-acs-security-token|X-aliyun-ecs-metadata-token"
)
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>)]+"), "<url>"),
    (re.compile(r"(?i)(with url|url)\s*[:=]\s*[^\s'\"]+"), r"\1: <url>"),
    (re.compile(r"(?<![\w.])/[\w./-]*\?[^\s'\")]+"), "<url>"),
    (
        re.compile(rf"(?i)({_SENSITIVE_KEYS})(=|%3D|%253D)[^&\s'\",)]*"),
        r"\1=***",
    ),
    (
        re.compile(rf"(?i)([\"']?(?:{_SENSITIVE_KEYS})[\"']?\s*:\s*)[\"'][^\"']*[\"']"),
        r"\1'***'",
    ),
    (re.compile(r"(?i)(string to sign is)\s*:?.*"), r"\1 <hidden>"),
    # JSON documents with credentials (an STS file, a metadata reply) quoted in a message.
    (
        re.compile(r"(?i)(\"(?:access_key_secret|secret|password)\"\s*:\s*)\"[^\"]*\""),
        r'\1"***"',
    ),
]

MAX_SECRETS = 64  # a role rotating hourly registers two values an hour; old ones expired


class _Secrets:
    """The most recently loaded secret values, longest first when read.

    Bounded, so a long-running driver whose role credentials rotate all day does not scan
    an ever-growing list on every log line; the sorted view is kept until the set changes.
    """

    def __init__(self, limit: int = MAX_SECRETS) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._values: dict[str, None] = {}  # insertion order: oldest first
        self._sorted: tuple[str, ...] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._values:
                if next(reversed(self._values)) == value:
                    return
                del self._values[value]  # seen again: now the most recent
            self._values[value] = None
            while len(self._values) > self._limit:
                del self._values[next(iter(self._values))]
            self._sorted = None

    def longest_first(self) -> tuple[str, ...]:
        with self._lock:
            if self._sorted is None:
                self._sorted = tuple(sorted(self._values, key=len, reverse=True))
            return self._sorted


_secrets = _Secrets()


def register_secret(value: str) -> None:
    """Remember a secret (access key secret, STS token) so ``scrub`` masks it anywhere."""
    if value and len(value) >= 6:
        _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` without URLs, signatures, access keys, tokens or known secret values."""
    for secret in _secrets.longest_first():
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
