"""cioproc.errors: one hierarchy, and the command line's one catch of its base class (issue 14 item 6)."""

from __future__ import annotations

import pytest

from cioproc import cli
from cioproc.errors import CioprocError, ConfigurationError, DataError, DeliveryError, KafkaFailure, StartupError


def _classes() -> dict[str, type]:
    from cioproc.app.faust_config import StartupError as FaustConfigStartupError
    from cioproc.config import ConfigError
    from cioproc.generate.jsonlines import LineError
    from cioproc.generate.produce import ProduceError
    from cioproc.kafka.broker import BrokerError
    from cioproc.kafka.topics import TopicsFileError
    from cioproc.models.commands import CommandDecodeError
    from cioproc.models.state import StateDecodeError
    from cioproc.ops.inspect import InspectError
    from cioproc.replay import ForwardMoveRefused, ReplayError
    from cioproc.sender import SenderConfigError
    from cioproc.sender.client import ClientConfigError, TransportError
    from cioproc.sender.payloads import PayloadError

    return {
        "ConfigError": ConfigError, "TopicsFileError": TopicsFileError, "SenderConfigError": SenderConfigError,
        "ClientConfigError": ClientConfigError, "StartupError": FaustConfigStartupError,
        "BrokerError": BrokerError, "ReplayError": ReplayError, "ForwardMoveRefused": ForwardMoveRefused,
        "ProduceError": ProduceError, "InspectError": InspectError, "TransportError": TransportError,
        "PayloadError": PayloadError, "CommandDecodeError": CommandDecodeError, "StateDecodeError": StateDecodeError,
        "LineError": LineError,
    }


KINDS = {
    "ConfigError": ConfigurationError, "TopicsFileError": ConfigurationError, "SenderConfigError": ConfigurationError,
    "ClientConfigError": ConfigurationError, "StartupError": StartupError, "BrokerError": KafkaFailure,
    "ReplayError": KafkaFailure, "ForwardMoveRefused": KafkaFailure, "ProduceError": KafkaFailure,
    "InspectError": CioprocError, "TransportError": DeliveryError, "PayloadError": DeliveryError,
    "CommandDecodeError": DataError, "StateDecodeError": DataError, "LineError": DataError,
}


def test_every_error_is_in_the_hierarchy_under_its_kind():
    classes = _classes()
    assert set(classes) == set(KINDS)
    for name, cls in classes.items():
        assert issubclass(cls, KINDS[name]), f"{name} is not a {KINDS[name].__name__}"
        assert issubclass(cls, CioprocError)
    # Re-exported where it was imported before: one class, not a copy.
    assert classes["StartupError"] is StartupError
    # The builtin bases callers catch today still hold.
    assert issubclass(classes["ConfigError"], ValueError) and issubclass(classes["BrokerError"], RuntimeError)


def _raising(exc: Exception):
    def handler(_args: object) -> int:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("make", "code", "line"),
    [
        (lambda c: c["ConfigError"](["CIO_REGION='mars' is not a region", "CIO_SITE_ID is not set"]), 2,
         "config error: CIO_REGION='mars' is not a region\nconfig error: CIO_SITE_ID is not set\n"),
        (lambda c: c["TopicsFileError"]("topics.yaml: no topic with role 'commands'"), 2,
         "error: topics.yaml: no topic with role 'commands'\n"),
        (lambda c: c["StartupError"]("faust-streaming 0.99 is not tested"), 2,
         "error: faust-streaming 0.99 is not tested\n"),
        (lambda c: c["BrokerError"]("no Java runtime found"), 1, "error: no Java runtime found\n"),
        (lambda c: c["ReplayError"]("topic 'x' does not exist"), 1, "error: topic 'x' does not exist\n"),
    ],
)
def test_the_command_line_prints_a_cioproc_error_as_its_lines_with_its_exit_code(monkeypatch, capsys, make, code, line):
    monkeypatch.setattr(cli, "_config", _raising(make(_classes())))
    assert cli.main(["config"]) == code
    captured = capsys.readouterr()
    assert captured.err == line and captured.out == ""


def test_an_error_outside_the_hierarchy_is_not_swallowed(monkeypatch):
    monkeypatch.setattr(cli, "_config", _raising(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):
        cli.main(["config"])
