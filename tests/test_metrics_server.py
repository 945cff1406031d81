"""The metrics server reports the port it listens on when asked for any free one (0)."""

from __future__ import annotations

import aiohttp

from cioproc.observability.metrics import MetricsServer


async def test_port_zero_reports_the_port_it_listens_on():
    server = MetricsServer(port=0)
    port = await server.start()
    try:
        assert port > 0
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
    finally:
        await server.stop()
