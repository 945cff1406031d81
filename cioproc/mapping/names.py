"""Event names as Customer.io receives them."""

from __future__ import annotations

from cioproc.mapping.values import fit_utf8

__all__ = ["MAX_EVENT_NAME_BYTES", "event_name"]

MAX_EVENT_NAME_BYTES = 100  # Customer.io: event name at most 100 bytes


def event_name(raw: str) -> tuple[str, bool]:
    """mParticle's rule (trim leading/trailing whitespace, spaces -> ``_``), cut to 100 bytes.

    Returns the name and whether it had to be cut. An empty name means "drop the event".
    """
    name = raw.strip().replace(" ", "_")
    if len(name) <= MAX_EVENT_NAME_BYTES // 4:
        return name, False
    fitted = fit_utf8(name, MAX_EVENT_NAME_BYTES)
    return fitted, fitted is not name
