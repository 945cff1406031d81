"""Structured log lines (one JSON object per line) with secrets redacted.

Secrets are registered once at start-up; a logging filter replaces any occurrence in the
formatted message, arguments and exception text with ``****``. This is a second line of
defence: code never formats the API key on purpose (config.Secret masks itself).
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

_SECRETS: set[str] = set()
_REDACTED = "****"


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every log record from now on (values under 4 chars are ignored)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Render the message once, redacted, so no handler can format a secret back in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return redact(orjson.dumps(entry, default=str).decode())


def setup_logging(level: str = "info", json_lines: bool = True) -> None:
    """Configure the root logger for a cioproc process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if json_lines else plain)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
