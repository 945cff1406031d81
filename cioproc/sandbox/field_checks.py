"""The field checks of the sandbox's Track API (:mod:`cioproc.sandbox.validation`): the limits
Customer.io documents, identifiers, attribute names and values, and the EntryError each
failed check becomes. Sizes are bytes of UTF-8, structured values measured as compact JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from cioproc.sandbox.workspace import (
    CIO_ID,
    EMAIL,
    ID,
    Identifier,
)

# Limits (OpenAPI info section; reference/customerio.md).
MAX_ID_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300  # per identify call and per person
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000
MAX_ENTRY_BYTES = 32_000  # each v2 batch entry, and a whole v2 entity request: at most
MAX_BATCH_BYTES = 500_000  # a v2 batch request must be under this
V1_OBJECT_KEYS = frozenset({"cio_relationships", "cio_subscription_preferences"})


@dataclass(frozen=True, slots=True)
class EntryError:
    """One reason a request (or one v2 batch entry) is refused."""

    field: str
    reason: str
    message: str

    def as_v2(self, batch_index: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": self.reason, "field": self.field, "message": self.message}
        if batch_index is not None:
            body = {"batch_index": batch_index, **body}
        return body


class InvalidRequest(ValueError):
    """The request (or entry) does not have a documented shape or breaks a limit."""

    def __init__(self, errors: list[EntryError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON."""
    return len(orjson.dumps(value))


def parse_json(body: bytes) -> Any:
    """Decode a request body; raise InvalidRequest when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest([EntryError("body", "invalid_json", f"request body is not valid JSON: {exc}")]) from None


def path_identifier(raw: str) -> Identifier:
    """Infer a v1 path identifier's kind from its shape: email if it contains ``@``,
    ``cio_<value>`` for a cio_id, otherwise an id."""
    if "@" in raw:
        return Identifier(EMAIL, raw)
    if raw.startswith("cio_"):
        return Identifier(CIO_ID, raw[4:])
    return Identifier(ID, raw)


def check_identifier(ident: Identifier, field: str) -> list[EntryError]:
    """Limits and shape of one identifier value."""
    if not ident.value:
        return [EntryError(field, "required", f"{field}: {ident.kind} must not be empty")]
    if ident.kind == ID and utf8_len(ident.value) > MAX_ID_BYTES:
        return [EntryError(field, "too_long", f"{field}: id is longer than {MAX_ID_BYTES} bytes")]
    if ident.kind == EMAIL and "@" not in ident.value:
        return [EntryError(field, "invalid", f"{field}: email must contain '@'")]
    if ident.kind == EMAIL and utf8_len(ident.value) > MAX_ATTRIBUTE_VALUE_BYTES:
        return [EntryError(field, "too_long", f"{field}: email is longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes")]
    if ident.kind == CIO_ID and not ident.value.isalnum():
        return [EntryError(field, "invalid", f"{field}: cio_id must be letters and digits")]
    return []


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def attribute_errors(attributes: dict[str, Any], field: str, v1: bool) -> list[EntryError]:
    errors: list[EntryError] = []
    if len(attributes) > MAX_ATTRIBUTES:
        errors.append(EntryError(field, "too_many", f"{field}: more than {MAX_ATTRIBUTES} attributes in one call"))
    for name, value in attributes.items():
        where = f"{field}.{name}" if field else name
        if not name:
            errors.append(EntryError(where, "invalid", "attribute names must not be empty"))
        elif utf8_len(name) > MAX_ATTRIBUTE_NAME_BYTES:
            errors.append(
                EntryError(where, "too_long", f"attribute name is longer than {MAX_ATTRIBUTE_NAME_BYTES} bytes")
            )
        if v1 and name in V1_OBJECT_KEYS:
            if not isinstance(value, dict):
                errors.append(EntryError(where, "invalid", f"{name} must be an object"))
            continue
        if name in ("_update",):
            if not isinstance(value, bool):
                errors.append(EntryError(where, "invalid", "_update must be a boolean"))
            continue
        if name in ("_timestamp", "created_at"):
            removal = name == "created_at" and (value == "" or (value is None and not v1))
            if not is_int(value) and not removal:
                errors.append(EntryError(where, "invalid", f"{name} must be an integer Unix timestamp"))
            continue
        if name in (ID, EMAIL):
            errors.extend(body_identifier_errors(name, value, where, v1))
            continue
        if v1 and not isinstance(value, (str, int, float, bool)):
            errors.append(
                EntryError(where, "invalid", f"attribute {name!r}: v1 values must be a string, number or boolean")
            )
            continue
        size = utf8_len(value) if isinstance(value, str) else json_size(value)
        if size > MAX_ATTRIBUTE_VALUE_BYTES:
            errors.append(
                EntryError(
                    where, "too_long", f"attribute {name!r} value is longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
                )
            )
    return errors


def body_identifier_errors(kind: str, value: Any, where: str, v1: bool) -> list[EntryError]:
    if value == "" or (value is None and not v1):
        return []  # removal of the identifier
    if kind == ID and is_int(value):
        value = str(value)
    if not isinstance(value, str):
        return [EntryError(where, "invalid", f"{kind} must be a string")]
    return check_identifier(Identifier(kind, value), where)

