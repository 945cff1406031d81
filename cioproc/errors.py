"""cioproc's errors: one hierarchy, each error's message is one line saying what is wrong.

The command line (:func:`cioproc.cli.main`) catches :class:`CioprocError` once and prints
``<label>: <line>`` for each of its lines, then exits with its ``exit_code``. Every error
keeps the builtin base (``ValueError``, ``RuntimeError``) that callers caught before.

- :class:`ConfigurationError` (exit 2): settings, ``.env``, ``topics.yaml``, sender settings.
- :class:`StartupError` (exit 2): a worker that cannot run with this configuration or cluster.
- :class:`KafkaFailure` (exit 1): the local broker, a replay, producing input.
- :class:`DeliveryError`: a command that cannot reach Customer.io (handled per command).
- :class:`DataError`: bytes or lines that are not what they claim (counted or dead-lettered).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["CioprocError", "ConfigurationError", "DataError", "DeliveryError", "KafkaFailure", "StartupError"]


class CioprocError(Exception):
    """Base of cioproc's errors; the message is one line (a few: one per problem)."""

    exit_code: ClassVar[int] = 1
    label: ClassVar[str] = "error"

    def lines(self) -> list[str]:
        """What the command line prints, one line each."""
        return str(self).splitlines() or [type(self).__name__]


class ConfigurationError(CioprocError):
    """The configuration (variables, files) cannot work: fix it and start again."""

    exit_code = 2


class StartupError(ConfigurationError, RuntimeError):
    """The worker cannot start; the message is one line saying why and what to do."""


class KafkaFailure(CioprocError):
    """An operation on Kafka (or the local broker) that failed or must not run."""


class DeliveryError(CioprocError):
    """A command that cannot be delivered to Customer.io."""


class DataError(CioprocError, ValueError):
    """Bytes or a line that are not the record they should be."""
