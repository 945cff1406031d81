"""The sandbox in-process (aiohttp test client, or served with a session: Running), its
credentials, request helpers and sender settings pointing at it: shared by the sandbox tests."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import ClientSession, test_utils

from cioproc.sandbox import SANDBOX, SandboxConfig, create_app
from cioproc.sender import SenderConfig

SITE, KEY = "sandbox-site", "sandbox-key"  # the sandbox's default credentials
AUTH = {"Authorization": "Basic " + base64.b64encode(b"sandbox-site:sandbox-key").decode()}
ADMIN_TOKEN = "test-admin-token-5c1e"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextlib.asynccontextmanager
async def sandbox(**config: Any) -> AsyncIterator[test_utils.TestClient]:
    config.setdefault("admin_token", ADMIN_TOKEN)
    app = create_app(SandboxConfig(**config))
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client


async def call(client: test_utils.TestClient, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    headers = kw.pop("headers", AUTH)
    data = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
    async with client.request(method, path, data=data, headers=headers, **kw) as resp:
        text = await resp.read()
        return resp.status, orjson.loads(text) if text else None


async def inspect(client: test_utils.TestClient, what: str, query: str = "") -> Any:
    status, body = await call(client, "GET", f"/_sandbox/{what}{query}", headers=ADMIN)
    assert status == 200
    return body


def entry(action: str, ident: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"type": "person", "identifiers": ident, "action": action, **fields}


class Running:
    """An in-process sandbox and a client session to inspect it."""

    def __init__(self, runner: Any, port: int, session: ClientSession) -> None:
        self.runner, self.port, self.session = runner, port, session
        self.url = f"http://127.0.0.1:{port}"

    @property
    def state(self) -> Any:
        return self.runner.app[SANDBOX]

    async def get(self, what: str) -> Any:
        token = self.state.config.admin_token
        async with self.session.get(
            f"{self.url}/_sandbox/{what}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200
            return orjson.loads(await response.read())

    async def workspace(self) -> tuple[list[Any], list[Any]]:
        people = (await self.get("people?without_cio_id=1"))["people"]
        events = (await self.get("events"))["events"]
        return people, events


def sender_config(sandbox: Running, **overrides: Any) -> SenderConfig:
    values: dict[str, Any] = dict(
        site_id=SITE, api_key=KEY, track_url=sandbox.url, max_requests_per_second=None,
        retry_base_delay=0.01, retry_max_delay=0.05, auth_retry_interval=0.1, total_timeout=5.0,
    )
    return SenderConfig(**(values | overrides))
