"""Device types and the per-device-type ``created_at`` of the "Send User's Created At" setting."""

from __future__ import annotations

from typing import Any

from cioproc.models.state import UserState

__all__ = ["MAX_DEVICE_TYPES", "device_type", "record_device"]

MAX_DEVICE_TYPES = 16  # device types remembered per user; later new ones are not tracked

# application_info.os and device_info.platform spell the same device types differently.
_ALIASES = {
    "ios": "ios",
    "unityios": "ios",
    "android": "android",
    "unityandroid": "android",
    "mobileweb": "mobileweb",
    "web": "mobileweb",
    "alexa": "alexa",
    "alexaos": "alexa",
    "tvos": "tvos",
    "roku": "roku",
    "smarttv": "smarttv",
    "firetv": "firetv",
    "xbox": "xbox",
    "windowsphone": "windowsphone",
    "desktop": "desktop",
}


# Platforms that are not devices: no created_at, never the most recent device type.
_NOT_DEVICES = frozenset({"outofband", "server-to-server", "servertoserver", "s2s"})

_SEEN: dict[str, str | None] = {}  # raw value -> device type, for the few values in use


def _normalise(value: Any) -> str | None:
    if type(value) is not str:
        return None
    found = _SEEN.get(value, "")
    if found != "":
        return found
    key = value.strip().lower().replace("_", "").replace(" ", "")
    found = (
        None if not key or key == "unknown" or key in _NOT_DEVICES
        else (_ALIASES.get(key) or key[:32])
    )
    if len(_SEEN) < 256:
        _SEEN[value] = found
    return found


def device_type(application_info: Any, device_info: Any) -> str | None:
    """The batch's device type: application_info.os, else device_info.platform, else None
    (also for platforms that are not devices: OutOfBand, server-to-server)."""
    found = None
    if type(application_info) is dict:
        found = _normalise(application_info.get("os"))
    if found is None and type(device_info) is dict:
        found = _normalise(device_info.get("platform"))
    return found


def record_device(
    state: UserState, device: str, earliest_ms: int, latest_ms: int, first_run_ms: int | None
) -> None:
    """Remember when ``device`` was first seen and whether it is now the most recent one.

    created_at of a device type is the time of its first run (a ``first_run`` event) when
    the batch has one, else of its earliest event; an earlier time seen later (batches out
    of order) wins, a later one never replaces it.
    """
    first_seen = (first_run_ms if first_run_ms is not None else earliest_ms) // 1000
    known = state.devices.get(device)
    if known is None or first_seen < known:
        if known is None and len(state.devices) >= MAX_DEVICE_TYPES:
            return
        state.devices = {**state.devices, device: first_seen}  # a new map: see UserState
    if state.last_device is None or latest_ms > state.last_device_ms:
        state.last_device = device
        state.last_device_ms = latest_ms
