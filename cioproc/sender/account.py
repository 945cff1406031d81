"""Are the Customer.io credentials good, and for the configured region?

``GET /api/v1/accounts/region`` answers, for valid Track API credentials, ``{"url", "region",
"environment_id"}``: the workspace's region, whichever regional host is asked. `cioproc check`
and the sender at start use :func:`verify_account`; its problems are one line each and never
hold the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import orjson

from cioproc.sender.client import TrackClient, TransportError

REGION_PATH = "/api/v1/accounts/region"


@dataclass(frozen=True)
class AccountCheck:
    """The outcome: the workspace's region and environment when the key works, and the problems."""

    region: str | None = None
    environment_id: int | None = None
    problems: list[str] = field(default_factory=list)
    http_status: int | None = None  # None: no answer (transport_error says why)
    transport_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(status: int, body: bytes, configured_region: str, base_url: str) -> AccountCheck:
    """What a region response says about the configuration (pure)."""
    if status in (401, 403):
        return AccountCheck(problems=[
            f"Customer.io refused CIO_SITE_ID/CIO_API_KEY at {base_url} (HTTP {status}): use the Track API "
            f"credentials of your workspace (a key of the other region's workspace is refused too: check CIO_REGION)"
        ])
    if status != 200:
        return AccountCheck(problems=[f"Customer.io answered HTTP {status} to GET {REGION_PATH} at {base_url}"])
    try:
        answer = orjson.loads(body)
        region = str(answer["region"]).lower()
        environment = answer.get("environment_id")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return AccountCheck(problems=[f"GET {REGION_PATH} at {base_url} did not answer with a region"])
    if region != configured_region:
        return AccountCheck(region, environment, [
            f"CIO_REGION={configured_region} but the workspace of these credentials is in region {region}: "
            f"set CIO_REGION={region}"
        ])
    return AccountCheck(region, environment)


async def verify_account(client: TrackClient, configured_region: str) -> AccountCheck:
    """Ask the Track API where the credentials' workspace lives; compare with ``configured_region``."""
    try:
        result = await client.request("GET", REGION_PATH, b"")
    except TransportError as exc:
        problem = f"cannot reach the Track API at {client.base_url}: {exc.reason}: {exc}"
        return AccountCheck(problems=[problem], transport_error=exc.reason)
    return replace(judge(result.status, result.body, configured_region, client.base_url), http_status=result.status)
