"""Push devices (``CIO_FORWARD_DEVICES``): registrations -> Customer.io add/delete device.

What a batch says about push tokens, in batch order:

- ``push_registration`` with ``register: true``: its ``registration_token`` is a device of the
  person (add_device, ``last_used`` the event time); ``register: false``: it is not any more
  (delete_device);
- ``uninstall``: the batch's ``device_info.push_token`` is gone (delete_device), else the
  tokens remembered for the same device (same ``ios_idfv`` / ``android_uuid``);
- ``device_info.push_token`` that no event of the batch names (and no uninstall): a
  registration at the batch's latest event time.

The platform is the batch's ``device_info.platform`` (else its ``application_info.os``):
Customer.io devices are ``ios`` or ``android``; other platforms' tokens are drops.

The state remembers each token sent or deleted (``UserState.push_tokens``, at most
:data:`MAX_PUSH_TOKENS`, oldest change dropped first, deletions before live tokens), so:

- a token is added once: one already added is not sent again while it stays, except at most
  once per :data:`REFRESH_MS` of newer input (keeps ``last_used`` current, and takes back a
  token another person of a shared device took meanwhile: Customer.io moves a token to the
  person it was last added to);
- a new token for a device (same device id and platform) replaces the old one: the old one
  is deleted;
- input older than a token's last change changes nothing (a replay, a lagging batch): a
  replay adds nothing twice and cannot bring back a token deleted or replaced later;
- a token deleted before it was ever added is remembered too, so an older registration
  arriving late does not add it.

When the person's identifier changes, the live tokens are added to the new identifier (a
token belongs to one person in Customer.io: it moves there). Users that cannot be addressed
yet keep nothing: their tokens are added by the first batch that names them once they can.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from cioproc.mapping.results import Drop
from cioproc.models.commands import Command, CommandKind
from cioproc.models.state import UserState

__all__ = [
    "MAX_PUSH_TOKENS",
    "PUSH_EVENT_TYPES",
    "REFRESH_MS",
    "device_commands",
    "readd_commands",
]

MAX_PUSH_TOKENS = 8  # tokens (live and deleted) remembered per user
MAX_TOKEN_BYTES = 4096  # far above APNs' 64 hex and FCM's ~160 characters
REFRESH_MS = 24 * 3600 * 1000  # a live token is re-added at most once a day of newer input
PUSH_EVENT_TYPES = frozenset({"push_registration", "uninstall"})
_PLATFORMS = {"ios": "ios", "android": "android", "unityios": "ios", "unityandroid": "android"}
_TOKEN, _PLATFORM, _DEVICE, _MS, _ACTIVE = range(5)


def push_platform(device_info: Any, device_type: str | None) -> str | None:
    """``ios`` or ``android`` from ``device_info.platform``, else the batch's device type."""
    if type(device_info) is dict:
        platform = device_info.get("platform")
        if type(platform) is str:
            found = _PLATFORMS.get(platform.strip().lower().replace("_", ""))
            if found is not None:
                return found
    return _PLATFORMS.get(device_type or "")


def device_key(device_info: Any) -> int:
    """A 63-bit digest of the device's vendor id (``ios_idfv``, ``android_uuid``); 0: none."""
    if type(device_info) is not dict:
        return 0
    for name in ("ios_idfv", "android_uuid"):
        value = device_info.get(name)
        if type(value) is str and value.strip():
            digest = blake2b(f"{name}\0{value.strip()}".encode("utf-8", "surrogatepass"), digest_size=8)
            return (int.from_bytes(digest.digest(), "big") >> 1) or 1
    return 0


def _batch_token(device_info: Any) -> str | None:
    if type(device_info) is not dict:
        return None
    token = device_info.get("push_token")
    if type(token) is str and token.strip():
        return token.strip()
    return None


def _valid_token(token: Any) -> str | None:
    if type(token) is not str or not token.strip():
        return None
    token = token.strip()
    return token if len(token.encode("utf-8", "surrogatepass")) <= MAX_TOKEN_BYTES else None


class _Tokens:
    """The user's remembered tokens, copied on first change (the state's list is shared)."""

    def __init__(self, state: UserState) -> None:
        self.state = state
        self.entries = state.push_tokens
        self.copied = False

    def find(self, token: str) -> list[Any] | None:
        for entry in self.entries:
            if entry[_TOKEN] == token:
                return entry
        return None

    def _own(self) -> None:
        if not self.copied:
            self.entries = [entry.copy() for entry in self.entries]
            self.state.push_tokens = self.entries
            self.copied = True

    def set(self, token: str, platform: str, device: int, ms: int, active: bool, drops: list[Drop]) -> None:
        """Record a change of ``token`` as the newest change (kept in time order)."""
        self._own()
        self.entries[:] = [entry for entry in self.entries if entry[_TOKEN] != token]
        entry = [token, platform, device, ms, active]
        at = len(self.entries)
        while at > 0 and self.entries[at - 1][_MS] > ms:
            at -= 1
        self.entries.insert(at, entry)
        while len(self.entries) > MAX_PUSH_TOKENS:
            self._forget(drops)

    def _forget(self, drops: list[Drop]) -> None:
        for index, entry in enumerate(self.entries):
            if not entry[_ACTIVE]:
                del self.entries[index]
                return
        forgotten = self.entries.pop(0)
        drops.append(
            Drop(
                "push_token_forgotten",
                f"more than {MAX_PUSH_TOKENS} push tokens: the oldest ({forgotten[_PLATFORM]}) is "
                "no longer tracked (it stays in Customer.io)",
            )
        )


def device_commands(
    state: UserState,
    registrations: list[tuple[int, str, dict[str, Any], int]],
    device_info: Any,
    device_type: str | None,
    batch_ms: int | None,
    mpid: str,
    id_type: str,
    id_value: str,
    drops: list[Drop],
) -> list[Command]:
    """The add/delete device commands of one batch; updates ``state.push_tokens``.

    ``registrations``: the batch's push_registration / uninstall events as (position,
    event type, data, time ms), in batch order; ``batch_ms``: the batch's latest event
    time (the time of an implicit registration by ``device_info.push_token``)."""
    tokens = _Tokens(state)
    platform = push_platform(device_info, device_type)
    device = device_key(device_info)
    batch_token = _batch_token(device_info)
    commands: list[Command] = []
    named: set[str] = set()
    uninstalled = False
    operations: list[tuple[bool, str, int]] = []  # (add, token, ms)
    for position, event_type, data, ms in registrations:
        if event_type == "uninstall":
            uninstalled = True
            if batch_token is not None:
                operations.append((False, batch_token, ms))
                named.add(batch_token)
                continue
            same_device = [
                e[_TOKEN] for e in tokens.entries if device and e[_DEVICE] == device and e[_ACTIVE]
            ]
            if not same_device:
                drops.append(
                    Drop("unknown_push_token", f"uninstall {position}: no push token to delete "
                         "(no device_info.push_token, no token known for this device)")
                )
            operations.extend((False, token, ms) for token in same_device)
            continue
        register = data.get("register")
        token = _valid_token(data.get("registration_token"))
        if type(register) is not bool or token is None:
            drops.append(
                Drop("invalid_event", f"push_registration {position}: needs a boolean register "
                     f"and a registration_token of 1 to {MAX_TOKEN_BYTES} bytes")
            )
            continue
        named.add(token)
        operations.append((register, token, ms))
    if batch_token is not None and batch_token not in named and not uninstalled and batch_ms is not None:
        operations.append((True, batch_token, batch_ms))

    for add, token, ms in operations:
        known = tokens.find(token)
        if add:
            if platform is None:
                drops.append(
                    Drop("unsupported_push_platform", "a push token of a platform that is not "
                         "ios or android (device_info.platform) is not a Customer.io device")
                )
                continue
            if known is not None and ms < known[_MS]:
                if not known[_ACTIVE]:  # deleted or replaced later: older input cannot undo that
                    drops.append(Drop("stale_push_registration", "a registration older than the "
                                      "token's deletion or replacement"))
                continue
            if known is not None and known[_ACTIVE] and known[_PLATFORM] == platform and (
                ms < known[_MS] + REFRESH_MS
            ):
                continue  # sent already
            commands.append(
                Command(CommandKind.ADD_DEVICE, mpid, id_type, id_value, ms // 1000, {"platform": platform}, token)
            )
            tokens.set(token, platform, device or (known[_DEVICE] if known else 0), ms, True, drops)
            if device:  # a new token for this device replaces its older ones
                for entry in list(tokens.entries):
                    if (
                        entry[_ACTIVE] and entry[_TOKEN] != token and entry[_DEVICE] == device
                        and entry[_PLATFORM] == platform and entry[_MS] <= ms
                    ):
                        commands.append(
                            Command(CommandKind.DELETE_DEVICE, mpid, id_type, id_value, ms // 1000, {}, entry[_TOKEN])
                        )
                        tokens.set(entry[_TOKEN], entry[_PLATFORM], device, ms, False, drops)
            continue
        if known is not None and ms < known[_MS]:
            if known[_ACTIVE]:
                drops.append(Drop("stale_push_registration", "an unregistration older than the "
                                  "token's latest registration"))
            continue
        if known is not None and known[_ACTIVE]:
            commands.append(Command(CommandKind.DELETE_DEVICE, mpid, id_type, id_value, ms // 1000, {}, token))
        if known is None or known[_ACTIVE] or ms > known[_MS]:
            # remembered even when never added: an older registration arriving later must not add it
            tokens.set(token, known[_PLATFORM] if known else (platform or ""), device, ms, False, drops)
    return commands


def readd_commands(state: UserState, mpid: str, id_type: str, id_value: str) -> list[Command]:
    """add_device for every live token: the person's identifier changed, the tokens follow."""
    return [
        Command(CommandKind.ADD_DEVICE, mpid, id_type, id_value, entry[_MS] // 1000, {"platform": entry[_PLATFORM]},
                entry[_TOKEN])
        for entry in state.push_tokens
        if entry[_ACTIVE] and entry[_PLATFORM] in ("ios", "android")
    ]
