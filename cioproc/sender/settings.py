"""The sender's settings (:class:`SenderConfig`): where and how it delivers, validated once,
with the API key masked in every rendering."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from cioproc.config import Config
from cioproc.errors import ConfigurationError
from cioproc.sender.client import ClientConfigError, resolve_base_url

BATCH_LIMIT_BYTES = 500_000  # "Your batch request must be smaller than 500kb."
ENTRY_LIMIT_BYTES = 32_768  # "Each of the requests within the batch must also be 32kb or smaller."


class SenderConfigError(ConfigurationError, ValueError):
    """Sender configuration that cannot work (missing credentials, bad URL, bad limits)."""


@dataclass(frozen=True)
class SenderConfig:
    """Where and how the sender delivers. ``repr`` masks the API key."""

    site_id: str
    api_key: str = field(repr=False)
    region: str = "us"
    track_url: str | None = None
    transport: Literal["v2", "v1"] = "v2"
    max_requests_per_second: float | None = 100.0  # None: no ceiling
    rate_burst: float | None = None  # default: one second's worth
    max_batch_bytes: int = 495_000
    max_entry_bytes: int = 32_000
    max_batch_entries: int | None = None
    max_concurrency: int = 8  # requests in flight, across concurrent deliver() calls
    total_timeout: float = 30.0
    connect_timeout: float = 10.0
    retry_base_delay: float = 0.5
    retry_max_delay: float = 60.0
    retry_after_cap: float = 300.0
    max_retries: int | None = None  # None: retry transient failures until they succeed
    auth_retry_interval: float = 30.0
    isolate_merges: bool = True  # a merge gets a request of its own (its primary must exist)

    def __post_init__(self) -> None:
        missing = [name for name, value in (("site id", self.site_id), ("API key", self.api_key)) if not value]
        if missing:
            raise SenderConfigError(
                "Customer.io credentials missing: set CIO_SITE_ID and CIO_API_KEY "
                f"({' and '.join(missing)} not set)"
            )
        try:
            resolve_base_url(self.region, self.track_url)
        except ClientConfigError as exc:
            raise SenderConfigError(str(exc)) from None
        if self.transport not in ("v2", "v1"):
            raise SenderConfigError(f"transport must be 'v2' or 'v1', got {self.transport!r}")
        if not 0 < self.max_batch_bytes < BATCH_LIMIT_BYTES:
            raise SenderConfigError(f"max_batch_bytes must be below {BATCH_LIMIT_BYTES}")
        if not 0 < self.max_entry_bytes <= ENTRY_LIMIT_BYTES:
            raise SenderConfigError(f"max_entry_bytes must be at most {ENTRY_LIMIT_BYTES}")
        if self.max_requests_per_second is not None and self.max_requests_per_second <= 0:
            raise SenderConfigError("max_requests_per_second must be positive (or None for no ceiling)")
        if self.max_concurrency < 1 or (self.max_batch_entries is not None and self.max_batch_entries < 1):
            raise SenderConfigError("max_concurrency and max_batch_entries must be at least 1")
        positive = ("total_timeout", "connect_timeout", "retry_base_delay", "retry_max_delay", "auth_retry_interval")
        if any(getattr(self, name) <= 0 for name in positive):
            raise SenderConfigError(f"{', '.join(positive)} must be positive")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'api_key' else repr(getattr(self, f.name))}" for f in fields(self)
        )
        return f"SenderConfig({shown})"

    __str__ = __repr__

    @property
    def base_url(self) -> str:
        """The Track API base URL these settings select."""
        return resolve_base_url(self.region, self.track_url)

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> SenderConfig:
        """Sender settings from the process configuration (cioproc.config, the one place that
        reads environment variables); keyword arguments win."""
        values: dict[str, Any] = {
            "site_id": config.site_id or "",
            "api_key": config.api_key.reveal() if config.api_key else "",
            "region": config.region,
            "track_url": config.track_url,
            "transport": config.transport,
            "max_requests_per_second": config.max_requests_per_second,
            "max_concurrency": config.max_concurrency,
        }
        values.update(overrides)
        return cls(**values)
