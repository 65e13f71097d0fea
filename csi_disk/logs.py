"""Logging set-up: text or JSON lines, and a filter that keeps secrets out of every record.

The Alibaba SDK logs signed URLs and security tokens at DEBUG and puts URLs into its
exception text; the filter here is the last line of defence for anything that slips past
the places that scrub on purpose.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from csi_disk.scrubbing import scrub

__all__ = ["JsonFormatter", "SecretFilter", "configure", "scrub"]


class SecretFilter(logging.Filter):
    """Rewrites each record's message with ``scrub`` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both
            message = f"{record.msg!s} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if scrub(str(exc)) != str(exc):
                # Keep the traceback's shape but not the exception text.
                record.exc_text = f"{type(exc).__name__}: {scrub(str(exc))}"
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "method"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, sort_keys=False)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Install one stderr handler with the secret filter on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SecretFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK's own logging is where signed URLs and tokens would leak from.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    for name in ("aliyunsdkcore", "aliyunsdkecs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
