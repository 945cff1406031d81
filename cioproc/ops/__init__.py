"""Operator commands: `cioproc check`, `cioproc status` and `cioproc inspect`."""

from __future__ import annotations

import asyncio
import logging


def quiet_client_logs() -> None:
    """Keep aiokafka's and aiohttp's own log lines (Python's last-resort handler prints them to
    stderr) out of a command's output: its errors are reported once, as one line, by the command."""
    for name in ("aiokafka", "aiohttp", "kafka"):
        logging.getLogger(name).addHandler(logging.NullHandler())


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for one line, without the type twice."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name
