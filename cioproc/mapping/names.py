"""Event names as Customer.io receives them."""

from __future__ import annotations

import sys

from cioproc.mapping.values import fit_utf8

__all__ = ["MAX_EVENT_NAME_BYTES", "event_name"]

MAX_EVENT_NAME_BYTES = 100  # Customer.io: event name at most 100 bytes

# Every whitespace character but the space itself (tab, NBSP, U+3000, ...) -> a space.
# All of them are non-printable to str.isprintable, which lets a plain name skip the mapping.
_TO_SPACE = {
    code: " " for code in range(sys.maxunicode + 1) if chr(code).isspace() and code != 32
}


def event_name(raw: str) -> tuple[str, bool]:
    """mParticle's rule (trim whitespace, spaces -> ``_``), cut to 100 bytes.

    Every Unicode whitespace character counts as a space, inside the name as at its ends. A
    cut leaves no trailing ``_`` (it would be a space mParticle trims). Returns the name and
    whether it had to be cut. An empty name means "drop the event".
    """
    name = raw.strip()
    if not name.isprintable():
        name = name.translate(_TO_SPACE)
    cut = False
    if len(name) > MAX_EVENT_NAME_BYTES // 4:
        fitted = fit_utf8(name, MAX_EVENT_NAME_BYTES)
        if fitted is not name:
            name, cut = fitted.rstrip(" "), True
    return name.replace(" ", "_"), cut
