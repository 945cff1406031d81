"""Why a Kafka client could not connect, as one line a user can act on.

aiokafka logs the cause of a failed connection (refused SASL credentials, an untrusted
certificate, a TLS connection the broker closed) and then raises a bare "Unable to
bootstrap". :func:`watch_connections` keeps those log lines out of the output while a
command talks to Kafka and remembers the last cause, which :meth:`ConnectionFailures.describe`
turns into the command's single error line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

_CONNECT = "Unable connect to"


class ConnectionFailures(logging.Handler):
    """Collects aiokafka's connection failure messages; ``last`` is the latest cause."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(_CONNECT):
            self.last = message.split(": ", 1)[-1].strip()

    def describe(self, error: BaseException | str, bootstrap: str) -> str:
        """One line: what went wrong with Kafka at ``bootstrap`` and which variable to check."""
        if self.last is not None:
            return describe_failure(self.last, bootstrap)
        return _short(_text(error))


def describe_failure(cause: str, bootstrap: str) -> str:
    """The error line for a connection failure ``cause`` (an aiokafka message)."""
    if "SaslAuthenticationFailed" in cause or "invalid credentials" in cause:
        return (
            f"Kafka at {bootstrap} refused the SASL credentials: check KAFKA_SASL_USERNAME, "
            f"KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM ({_short(cause)})"
        )
    if "UnsupportedSaslMechanism" in cause:
        return f"Kafka at {bootstrap} does not offer this SASL mechanism: check KAFKA_SASL_MECHANISM ({_short(cause)})"
    if "CERTIFICATE_VERIFY_FAILED" in cause:
        return (
            f"the TLS certificate of Kafka at {bootstrap} is not trusted: set KAFKA_SSL_CAFILE to the CA "
            f"that signed it ({_short(cause)})"
        )
    if "WRONG_VERSION_NUMBER" in cause or "record layer failure" in cause:
        return (
            f"Kafka at {bootstrap} does not speak TLS there: check KAFKA_SECURITY_PROTOCOL and the port "
            f"({_short(cause)})"
        )
    if "closed" in cause:
        return (
            f"Kafka at {bootstrap} closed the connection: check KAFKA_SECURITY_PROTOCOL, and KAFKA_SSL_CERTFILE / "
            f"KAFKA_SSL_KEYFILE if it requires a client certificate ({_short(cause)})"
        )
    return f"cannot connect to Kafka at {bootstrap}: {_short(cause)}"


@contextmanager
def watch_connections(logger_name: str = "aiokafka") -> Iterator[ConnectionFailures]:
    """Silence aiokafka's log lines for the block and collect its connection failures."""
    logger = logging.getLogger(logger_name)
    failures = ConnectionFailures()
    saved = logger.level, logger.propagate, list(logger.handlers)
    logger.handlers = [failures]
    logger.propagate = False
    logger.setLevel(logging.ERROR)
    try:
        yield failures
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]


def _text(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    name, text = type(error).__name__, str(error).strip()
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _short(cause: str) -> str:
    return " ".join(cause.split())[:300]
