"""The sandbox's HTTP shell: Customer.io Track API endpoints plus inspection endpoints.

Track API (HTTP Basic auth ``site_id:api_key``; 401 ``{"meta":{"error":"Unauthorized request"}}``):

- ``PUT  /api/v1/customers/{identifier}``          v1 identify
- ``POST /api/v1/customers/{identifier}/events``   v1 event (type event, page or screen)
- ``POST /api/v1/merge_customers``                 v1 merge
- ``PUT  /api/v1/customers/{identifier}/devices``  v1 add (or update) a device
- ``DELETE /api/v1/customers/{identifier}/devices/{device_id}``  v1 delete a device
- ``POST /api/v2/entity``                          v2 one person entry
- ``POST /api/v2/batch``                           v2 ``{"batch": [...]}``
- ``GET  /api/v1/accounts/region``                 ``{"url", "region", "environment_id"}``

Inspection and control (``Authorization: Bearer <admin token>``: they hold personal data
and change the workspace): ``GET /_sandbox/people[?without_cio_id=1]``,
``GET /_sandbox/events[?with_cio_id=1]``, ``GET /_sandbox/stats``,
``GET /_sandbox/activity``, ``POST /_sandbox/reset``, ``GET|POST /_sandbox/faults``.
``GET /_sandbox/health`` is open (liveness).

Each Track request is counted, then faults are applied in this order: added latency, a
dropped connection, an injected 500/503/429, then the auth check, then the request is
handled (and possibly its connection dropped after it was applied).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import hdrs, web

from cioproc.sandbox.api import Counters, Reply, TrackApi
from cioproc.sandbox.config import SandboxConfig
from cioproc.sandbox.faults import FaultConfig, FaultDecision, FaultInjector
from cioproc.sandbox.workspace import Workspace

UNAUTHORIZED = {"meta": {"error": "Unauthorized request"}}
ADMIN_UNAUTHORIZED = {"error": "the /_sandbox/ routes need the sandbox's admin token: Authorization: Bearer <token>"}
OPEN_ADMIN_PATHS = frozenset({"/_sandbox/health"})
FAULT_BODIES = {
    500: {"meta": {"error": "Internal server error (sandbox fault injection)"}},
    503: {"meta": {"error": "Service unavailable (sandbox fault injection)"}},
    429: {"meta": {"error": "Too many requests (sandbox fault injection)"}},
}
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # oversize batches must reach the 400 check, not a 413


@dataclass(slots=True)
class Sandbox:
    """Everything one sandbox app holds."""

    config: SandboxConfig
    workspace: Workspace
    faults: FaultInjector
    api: TrackApi

    @classmethod
    def create(cls, config: SandboxConfig) -> Sandbox:
        workspace = Workspace(allow_email_update_by_id=config.allow_email_update_by_id)
        faults = FaultInjector(config.faults)
        return cls(config, workspace, faults, TrackApi(workspace, faults, Counters()))

    def authorized(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.config.site_id}:{self.config.api_key}".encode()
        return hmac.compare_digest(decoded, expected)

    def admin_authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        return scheme.lower() == "bearer" and bool(token) and hmac.compare_digest(
            token.encode(), self.config.admin_token.encode()
        )

    def reset(self) -> None:
        """Empty the workspace and counters; the fault RNG restarts from its seed."""
        self.workspace.clear()
        self.api.counters = Counters()
        self.faults.replace(self.faults.config)

    def stats(self) -> dict[str, Any]:
        c = self.api.counters
        return {
            "total_requests": c.total_requests,
            "by_endpoint": dict(sorted(c.by_endpoint.items())),
            "by_status": dict(sorted(c.by_status.items())),
            "faults_injected": dict(sorted(c.faults_injected.items())),
            "bytes_received": c.bytes_received,
            "operations_applied": c.operations_applied,
            "operations_failed": c.operations_failed,
            "operations_rejected": c.operations_rejected,
            "events_recorded": len(self.workspace.events),
            "events_deduplicated": self.workspace.events_deduplicated,
            "people": len(self.workspace.people),
        }


SANDBOX = web.AppKey("sandbox", Sandbox)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering; the client sees a disconnect."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)  # never written: the transport is closed


Call = Callable[[TrackApi, web.Request, bytes], Reply]


def _track(endpoint: str, call: Call) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        sandbox = request.app[SANDBOX]
        counters = sandbox.api.counters
        body = await request.read()
        counters.request(endpoint, len(body))
        decision = sandbox.faults.decide()
        if decision.status is None and sandbox.faults.unavailable(request.path, body):
            decision = FaultDecision(status=503, latency_ms=decision.latency_ms)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.drop:
            counters.fault("dropped")
            counters.status("dropped")
            return _drop(request)
        if decision.status is not None:
            counters.fault(str(decision.status))
            counters.status(decision.status)
            headers: dict[str, str] | None = None
            if decision.status == 429:
                headers = {hdrs.RETRY_AFTER: str(sandbox.faults.config.retry_after)}
            return _json(FAULT_BODIES[decision.status], decision.status, headers)
        if not sandbox.authorized(request.headers.get(hdrs.AUTHORIZATION)):
            counters.status(401)
            return _json(UNAUTHORIZED, 401)
        reply = call(sandbox.api, request, body)
        if decision.drop_after_apply:
            counters.fault("dropped_after_apply")
            counters.status("dropped")
            return _drop(request)
        counters.status(reply.status)
        return _json(reply.body, reply.status)

    return handler


def _region(api: TrackApi, request: web.Request, body: bytes) -> Reply:
    config = request.app[SANDBOX].config
    url = f"{request.scheme}://{request.host}"
    return Reply(200, {"url": url, "region": config.region, "environment_id": config.environment_id})


async def _people(request: web.Request) -> web.Response:
    with_cio_id = request.query.get("without_cio_id", "") not in ("1", "true")
    return _json({"people": request.app[SANDBOX].workspace.people_view(with_cio_id=with_cio_id)})


async def _events(request: web.Request) -> web.Response:
    with_cio_id = request.query.get("with_cio_id", "") in ("1", "true")
    return _json({"events": request.app[SANDBOX].workspace.events_view(with_cio_id=with_cio_id)})


async def _suppressions(request: web.Request) -> web.Response:
    return _json({"suppressions": request.app[SANDBOX].workspace.suppressions_view()})


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[SANDBOX].stats())


async def _activity(request: web.Request) -> web.Response:
    return _json({"activity": request.app[SANDBOX].workspace.activity})


async def _reset(request: web.Request) -> web.Response:
    request.app[SANDBOX].reset()
    return _json({})


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[SANDBOX].faults.config.to_json())


async def _set_faults(request: web.Request) -> web.Response:
    try:
        config = FaultConfig.from_json(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        return _json({"error": str(exc)}, 400)
    request.app[SANDBOX].faults.replace(config)
    return _json(config.to_json())


async def _health(request: web.Request) -> web.Response:
    return _json({"ok": True})


@web.middleware
async def _admin_guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The /_sandbox/ routes answer only requests that carry the admin token."""
    path = request.path
    if path.startswith("/_sandbox/") and path not in OPEN_ADMIN_PATHS:
        if not request.app[SANDBOX].admin_authorized(request.headers.get(hdrs.AUTHORIZATION)):
            return _json(ADMIN_UNAUTHORIZED, 401)
    return await handler(request)


def create_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox as an aiohttp application; its state is ``app[SANDBOX]``."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_admin_guard])
    app[SANDBOX] = Sandbox.create(config or SandboxConfig())
    app.router.add_put(
        "/api/v1/customers/{identifier}",
        _track("v1_identify", lambda api, r, b: api.v1_identify(r.match_info["identifier"], b)),
    )
    app.router.add_post(
        "/api/v1/customers/{identifier}/events",
        _track("v1_event", lambda api, r, b: api.v1_event(r.match_info["identifier"], b)),
    )
    app.router.add_delete(
        "/api/v1/customers/{identifier}",
        _track("v1_delete", lambda api, r, b: api.v1_delete(r.match_info["identifier"])),
    )
    app.router.add_post(
        "/api/v1/customers/{identifier}/suppress",
        _track("v1_suppress", lambda api, r, b: api.v1_suppress(r.match_info["identifier"])),
    )
    app.router.add_post("/api/v1/merge_customers", _track("v1_merge", lambda api, r, b: api.v1_merge(b)))
    app.router.add_put(
        "/api/v1/customers/{identifier}/devices",
        _track("v1_add_device", lambda api, r, b: api.v1_add_device(r.match_info["identifier"], b)),
    )
    app.router.add_delete(
        "/api/v1/customers/{identifier}/devices/{device_id}",
        _track(
            "v1_delete_device",
            lambda api, r, b: api.v1_delete_device(r.match_info["identifier"], r.match_info["device_id"]),
        ),
    )
    app.router.add_post("/api/v2/entity", _track("v2_entity", lambda api, r, b: api.v2_entity(b)))
    app.router.add_post("/api/v2/batch", _track("v2_batch", lambda api, r, b: api.v2_batch(b)))
    app.router.add_get("/api/v1/accounts/region", _track("region", _region))
    app.router.add_get("/_sandbox/people", _people)
    app.router.add_get("/_sandbox/events", _events)
    app.router.add_get("/_sandbox/suppressions", _suppressions)
    app.router.add_get("/_sandbox/stats", _stats)
    app.router.add_get("/_sandbox/activity", _activity)
    app.router.add_post("/_sandbox/reset", _reset)
    app.router.add_get("/_sandbox/faults", _get_faults)
    app.router.add_post("/_sandbox/faults", _set_faults)
    app.router.add_get("/_sandbox/health", _health)
    return app


async def serve(config: SandboxConfig | None = None) -> tuple[web.AppRunner, int]:
    """Start the sandbox; return its runner (``await runner.cleanup()`` stops it) and port."""
    config = config or SandboxConfig()
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def run(config: SandboxConfig | None = None, ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; ``ready`` gets the base URL once listening."""
    config = config or SandboxConfig()

    async def main() -> None:
        runner, port = await serve(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            if ready is not None:
                host = f"[{config.host}]" if ":" in config.host else config.host
                ready(f"http://{host}:{port}")
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
