"""The HTTP shell: one shared aiohttp session to the Track API host, with Basic auth.

It only moves bytes: a request goes out, an :class:`HttpResult` or a :class:`TransportError`
comes back. What a status means is :mod:`cioproc.sender.responses`' business. No message made
here ever holds the API key (see :func:`redact`).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from cioproc import __version__
from cioproc.config import REGION_HOSTS  # the regions' hosts, declared with the CIO_REGION setting
from cioproc.errors import ConfigurationError, DeliveryError

USER_AGENT = f"cioproc/{__version__}"

REGION_HOSTNAMES = frozenset(URL(url).host for url in REGION_HOSTS.values())


class ClientConfigError(ConfigurationError, ValueError):
    """A Track API location or credentials that cannot be used."""


def resolve_base_url(region: str, track_url: str | None) -> str:
    """The Track API base URL: an explicit ``track_url`` or the host of ``region``.

    Plain http is accepted only for an explicit ``track_url`` that is not a Customer.io host.
    """
    if track_url:
        url = URL(track_url.strip())
        if url.scheme not in ("http", "https") or not url.host:
            raise ClientConfigError(f"track URL must be an absolute http(s) URL, got {str(url.with_user(None))!r}")
        if url.user or url.password:
            raise ClientConfigError("track URL must not carry credentials; set the site id and API key instead")
        if url.scheme == "http" and url.host in REGION_HOSTNAMES:
            raise ClientConfigError(f"refusing plain http to {url.host}: use https")
        return str(url).rstrip("/")
    try:
        return REGION_HOSTS[region.lower()]
    except KeyError:
        raise ClientConfigError(f"unknown region {region!r}: expected one of {sorted(REGION_HOSTS)}") from None


def basic_auth_header(site_id: str, api_key: str) -> str:
    """The ``Authorization`` header value for Track API Basic auth."""
    token = base64.b64encode(f"{site_id}:{api_key}".encode()).decode("ascii")
    return "Basic " + token


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class HttpResult:
    """A response: status, body, its ``Retry-After`` header, and seconds from send to body read."""

    status: int
    body: bytes
    retry_after: str | None
    latency: float


class TransportError(DeliveryError):
    """No HTTP response: connection refused or dropped, timeout, DNS. The message holds neither
    the key nor the request path (a v1 path holds a person's identifier)."""

    def __init__(self, reason: str, message: str, latency: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.latency = latency


class TrackClient:
    """One pooled aiohttp session to the Track API. Use ``async with`` or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        site_id: str,
        api_key: str,
        *,
        max_connections: int = 16,
        total_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._authorization = basic_auth_header(site_id, api_key)
        self._secrets = (api_key, self._authorization.split(" ", 1)[1])
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"TrackClient(base_url={self.base_url!r})"

    def redact(self, text: str) -> str:
        """``text`` without the API key or the Basic auth token."""
        return redact(text, self._secrets)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use (inside the running event loop); never
        again after :meth:`close` (RuntimeError), so a late retry cannot open connections."""
        if self._closed:
            raise RuntimeError("the Track API client is closed")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"Authorization": self._authorization, "Content-Type": "application/json"},
                skip_auto_headers=("User-Agent",),
                raise_for_status=False,
            )
        return self._session

    async def request(self, method: str, path: str, body: bytes) -> HttpResult:
        """Send ``body`` (JSON) to ``path``; return the response or raise TransportError."""
        started = time.perf_counter()
        try:
            async with self.session.request(
                method,
                URL(self.base_url + path, encoded=True),
                data=body,
                allow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            ) as response:
                payload = await response.read()
                return HttpResult(
                    status=response.status,
                    body=payload,
                    retry_after=response.headers.get("Retry-After"),
                    latency=time.perf_counter() - started,
                )
        except TimeoutError:
            raise TransportError("timeout", "timed out", time.perf_counter() - started) from None
        except (aiohttp.ClientError, OSError) as exc:
            detail = self.redact(f"{type(exc).__name__}: {exc}")
            raise TransportError("transport", detail, time.perf_counter() - started) from None

    async def close(self) -> None:
        """Close the session and its connections, for good."""
        self._closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> TrackClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
