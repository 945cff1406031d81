"""Nothing listens on every interface by default: the metrics server binds to
CIOPROC_METRICS_HOST (127.0.0.1 unless set), the sandbox to 127.0.0.1."""

from __future__ import annotations

import pytest
from helpers_net import listening_hosts

from cioproc.config import ConfigError, parse_config
from cioproc.observability.metrics import MetricsServer
from cioproc.sandbox import SandboxConfig, serve


def test_metrics_host_defaults_to_loopback_and_is_validated():
    assert parse_config({}).metrics_host == "127.0.0.1"
    assert parse_config({"CIOPROC_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"
    assert parse_config({"CIOPROC_METRICS_HOST": "::1"}).metrics_host == "::1"
    assert parse_config({"CIOPROC_METRICS_HOST": "metrics.internal"}).metrics_host == "metrics.internal"
    assert parse_config({}).masked()["CIOPROC_METRICS_HOST"] == "127.0.0.1"
    with pytest.raises(ConfigError) as error:
        parse_config({"CIOPROC_METRICS_HOST": "http://0.0.0.0:9108"})
    assert error.value.problems == [
        "CIOPROC_METRICS_HOST='http://0.0.0.0:9108' must be an IP address or a host name to listen on"
    ]


async def test_metrics_server_listens_on_loopback_unless_told_otherwise():
    server = MetricsServer(port=0)
    port = await server.start()
    try:
        assert listening_hosts(port) == {"127.0.0.1"}
    finally:
        await server.stop()
    server = MetricsServer(host="0.0.0.0", port=0)
    port = await server.start()
    try:
        assert listening_hosts(port) == {"0.0.0.0"}
    finally:
        await server.stop()


async def test_sandbox_listens_on_loopback_by_default():
    runner, port = await serve(SandboxConfig(port=0))
    try:
        assert listening_hosts(port) == {"127.0.0.1"}
    finally:
        await runner.cleanup()
