"""A small scripted aiohttp Track API (FakeTrack), sender settings pointing at it, and commands:
shared by the sender tests (the ``track`` fixture in conftest.py starts one per test)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from cioproc.models.commands import Command, CommandKind
from cioproc.sender import SenderConfig

SITE = "site-123"
KEY = "sk-test-Zq8rX2p9-secret"
ULID_BASE = "01HZX3K9T6Q8WJ1V5N2M4R"


@dataclass
class Seen:
    """One request the fake server received."""

    method: str
    path: str
    body: Any
    authorized: bool
    at: float

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.body["batch"] if isinstance(self.body, dict) and "batch" in self.body else [self.body]


DROP = web.Response(status=599)  # sentinel: the script wants the connection dropped


Handler = Callable[[Seen, int], Awaitable["web.StreamResponse | None"]]


@dataclass
class FakeTrack:
    """A Track API stand-in whose answers come from ``script(seen, n)`` (None: 200 ``{}``)."""

    script: Handler | None = None
    seen: list[Seen] = field(default_factory=list)
    delay: Callable[[], float] | None = None
    in_flight_people: set[str] = field(default_factory=set)
    overlaps: list[str] = field(default_factory=list)
    max_in_flight: int = 0
    _in_flight: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> FakeTrack:
        app = web.Application(client_max_size=2**21)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        expected = "Basic " + base64.b64encode(f"{SITE}:{KEY}".encode()).decode()
        raw = await request.read()
        seen = Seen(
            request.method,
            request.raw_path,
            orjson.loads(raw) if raw else None,
            request.headers.get("Authorization") == expected,
            time.monotonic(),
        )
        self.seen.append(seen)
        people = {person_key(entry) for entry in seen.entries}
        clash = people & self.in_flight_people
        if clash:
            self.overlaps.extend(sorted(clash))
        self.in_flight_people |= people
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay is not None:
                await asyncio.sleep(self.delay())
            response = await self.script(seen, len(self.seen)) if self.script else None
            if response is DROP:  # hang up without answering
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            return response if response is not None else web.json_response({})
        finally:
            self._in_flight -= 1
            self.in_flight_people -= people


def person_key(entry: dict[str, Any]) -> str:
    identifiers = entry.get("identifiers") or entry.get("primary") or {}
    return orjson.dumps(identifiers, option=orjson.OPT_SORT_KEYS).decode()


def config(server: FakeTrack, **overrides: Any) -> SenderConfig:
    values: dict[str, Any] = dict(
        site_id=SITE,
        api_key=KEY,
        track_url=server.url,
        max_requests_per_second=None,
        retry_base_delay=0.01,
        retry_max_delay=0.05,
        auth_retry_interval=0.1,
        total_timeout=5.0,
    )
    values.update(overrides)
    return SenderConfig(**values)


def track_cmd(user: int, seq: int, name: str = "Played", **attributes: Any) -> Command:
    return Command(
        kind=CommandKind.TRACK,
        mpid=f"mp-{user}",
        id_type="id",
        id_value=f"user-{user}",
        timestamp=1_700_000_000 + seq,
        attributes={"seq": seq, **attributes},
        name=name,
        event_id=f"{ULID_BASE}{seq:04d}",
    )


def identify_cmd(user: int, seq: int, **attributes: Any) -> Command:
    return Command(
        CommandKind.IDENTIFY, f"mp-{user}", "id", f"user-{user}", 1_700_000_000 + seq, {"seq": seq, **attributes}
    )
