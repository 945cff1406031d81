"""The sandbox in-process (aiohttp test client), its credentials and request helpers: shared by
the sandbox tests."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import test_utils

from cioproc.sandbox import SandboxConfig, create_app

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
