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

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret (access key secret, STS token) so ``scrub`` masks it anywhere."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` without URLs, signatures, access keys, tokens or known secret values."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
