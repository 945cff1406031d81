"""The settings table of :mod:`cioproc.config`: each environment variable declared once, with
its default, parser and validation, where it goes in Config, masking and help."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cioproc.config_values import (
    FALSE,
    REGION_HOSTS,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    TRUE,
    Secret,
    mask_user_info,
    rocksdb_installed,
    track_url_problem,
    valid_host_port,
    valid_listen_host,
)
from cioproc.models.settings import UserIdType

# ---- the settings table: each variable once -------------------------------------------------

Parsed = tuple[Any, str | None]
"""A setting's value, and the one-line problem when its text is not valid (the value is then a fallback)."""
Parser = Callable[[str, "str | None", "str | None"], Parsed]
"""(variable, text: the stripped value or else the default, raw: the value as given) -> Parsed."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, how it is parsed and validated, where it goes in
    :class:`Config` (``fields``: attribute paths; none for one read before parsing), whether it
    is masked, and a line of help. :data:`SETTINGS` drives :func:`parse_config`,
    :meth:`Config.masked` (``cioproc config``), :data:`VARIABLES` and the dataclass defaults."""

    variable: str
    default: str | None
    parse: Parser
    fields: tuple[str, ...]
    help: str
    secret: bool = False


def _plain(name: str, text: str | None, raw: str | None) -> Parsed:
    return text, None


def _path(name: str, text: str | None, raw: str | None) -> Parsed:
    return Path(text or ""), None


def _secret(name: str, text: str | None, raw: str | None) -> Parsed:
    return (Secret(text) if text else None), None


def _boolean(name: str, text: str | None, raw: str | None) -> Parsed:
    value = (text or "").lower()
    if value in TRUE:
        return True, None
    if value in FALSE:
        return False, None
    return False, f"{name}={raw!r} is not a boolean (use true or false)"


def _choice(allowed: tuple[str, ...], rule: str, upper: bool = False, show_raw: bool = True) -> Parser:
    """One of ``allowed`` (case-insensitive); the problem shows the raw value (or the normalized one)."""

    def parse(name: str, text: str | None, raw: str | None) -> Parsed:
        value = (text or "").upper() if upper else (text or "").lower()
        if value in allowed:
            return value, None
        return (value if upper else allowed[0]), f"{name}={(raw if show_raw else value)!r} {rule}"

    return parse


def _number(kind: type, minimum: float, maximum: float | None = None) -> Parser:
    def parse(name: str, text: str | None, raw: str | None) -> Parsed:
        try:
            value = kind(text)
            if not math.isfinite(value) or value < minimum:  # nan compares false to everything
                raise ValueError
        except (TypeError, ValueError):
            return kind(_setting(name).default), f"{name}={text!r} must be a {kind.__name__} >= {minimum}"
        if maximum is not None and value > maximum:
            return value, f"{name}={value} is not a TCP port"
        return value, None

    return parse


def _region(name: str, text: str | None, raw: str | None) -> Parsed:
    value = (text or "").lower()
    if value in REGION_HOSTS:
        return value, None
    return "us", f"{name}={raw!r} is not a Customer.io region (use us or eu)"


def _track_url(name: str, text: str | None, raw: str | None) -> Parsed:
    if text is None:
        return None, None
    problem = track_url_problem(text)
    return text.rstrip("/"), (f"{name}={mask_user_info(text)!r} {problem}" if problem else None)


def _user_id_type(name: str, text: str | None, raw: str | None) -> Parsed:
    try:
        return UserIdType((text or "").lower()), None
    except ValueError:
        return UserIdType.PREFER_CUSTOMER_ID, f"{name}={raw!r} must be customer_id, email or prefer_customer_id"


def _listen_address(name: str, text: str | None, raw: str | None) -> Parsed:
    host = text or ""
    problem = f"{name}={host!r} must be an IP address or a host name to listen on"
    return host, (None if valid_listen_host(host) else problem)


def _bootstrap(name: str, text: str | None, raw: str | None) -> Parsed:
    value = text or ""
    if all(valid_host_port(part) for part in value.split(",")):
        return value, None
    return value, f"{name}={mask_user_info(value)!r} must be host:port[,host:port...]"


def _mechanism(name: str, text: str | None, raw: str | None) -> Parsed:
    if text is None:
        return None, None
    value = text.upper()
    problem = f"{name}={value!r} must be one of {', '.join(sorted(SASL_MECHANISMS))}"
    return value, (None if value in SASL_MECHANISMS else problem)


def _store(name: str, text: str | None, raw: str | None) -> Parsed:
    value = (text or "").lower()
    if value not in ("memory", "rocksdb"):
        return "memory", f"{name}={raw!r} must be memory or rocksdb"
    if value == "rocksdb" and not rocksdb_installed():
        return value, f"{name}=rocksdb needs the rocksdb extra: pip install 'cioproc[rocksdb]'"
    return value, None


def _app_id(name: str, text: str | None, raw: str | None) -> Parsed:
    value = text or ""
    if re.fullmatch(r"[A-Za-z0-9._-]{1,200}", value):
        return value, None
    return value, f"{name}={value!r} must be letters, digits, '.', '_' or '-' (1-200)"


SETTINGS: tuple[Setting, ...] = (
    Setting("CIO_SITE_ID", None, _plain, ("site_id",), "Customer.io Site ID (the sender needs it)"),
    Setting("CIO_API_KEY", None, _secret, ("api_key",), "Customer.io Track API key (the sender needs it)",
            secret=True),
    Setting("CIO_REGION", "us", _region, ("region",), "us or eu: the Track API host"),
    Setting("CIO_TRACK_URL", None, _track_url, ("track_url",), "another Track API base URL (the sandbox, a proxy)"),
    Setting("CIO_USER_ID_TYPE", "prefer_customer_id", _user_id_type, ("mapping.user_id_type",),
            "customer_id, email or prefer_customer_id"),
    Setting("CIO_INCLUDE_USER_ATTRIBUTES", "true", _boolean, ("mapping.include_user_attributes",),
            "forward all user attributes"),
    Setting("CIO_SEND_CREATED_AT", "false", _boolean, ("mapping.send_created_at",), "forward created_at"),
    Setting("CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT", "false", _boolean, ("mapping.audience_attribute_per_segment",),
            "also set 'In <audience name>'"),
    Setting("CIO_MERGE_PEOPLE", "false", _boolean, ("mapping.merge_people",),
            "merge people when an identifier changes (irreversible)"),
    Setting("CIO_FORWARD_DEVICES", "false", _boolean, ("mapping.forward_devices",), "forward push tokens as devices"),
    Setting("CIO_ERASURE_ACTION", "delete",
            _choice(("delete", "suppress"), "must be delete or suppress (delete and block the identifiers)"),
            ("mapping.erasure_action",), "what an erasure does: delete or suppress"),
    Setting("CIO_TRANSPORT", "v2",
            _choice(("v2", "v1"), "must be v2 (batch API) or v1 (one request per command)"),
            ("transport", "mapping.transport"), "v2 (batch API) or v1 (one request per command)"),
    Setting("CIO_MAX_REQUESTS_PER_SECOND", "100", _number(float, 0.1), ("max_requests_per_second",),
            "ceiling on Track API requests"),
    Setting("CIO_MAX_CONCURRENCY", "8", _number(int, 1), ("max_concurrency",), "Track API requests in flight"),
    Setting("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", _bootstrap, ("kafka.bootstrap_servers",),
            "the Kafka cluster: host:port[,host:port...]"),
    Setting("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
            _choice(tuple(SECURITY_PROTOCOLS),
                    f"must be one of {', '.join(sorted(SECURITY_PROTOCOLS))}", upper=True, show_raw=False),
            ("kafka.security_protocol",), "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    Setting("KAFKA_SASL_MECHANISM", None, _mechanism, ("kafka.sasl_mechanism",), "PLAIN, SCRAM-SHA-256, ..."),
    Setting("KAFKA_SASL_USERNAME", None, _plain, ("kafka.sasl_username",), "SASL user"),
    Setting("KAFKA_SASL_PASSWORD", None, _secret, ("kafka.sasl_password",), "SASL password", secret=True),
    Setting("KAFKA_SSL_CAFILE", None, _plain, ("kafka.ssl_cafile",), "CA certificates (PEM)"),
    Setting("KAFKA_SSL_CERTFILE", None, _plain, ("kafka.ssl_certfile",), "client certificate (PEM)"),
    Setting("KAFKA_SSL_KEYFILE", None, _plain, ("kafka.ssl_keyfile",), "client key (PEM, unencrypted)"),
    Setting("CIOPROC_APP_ID", "cioproc", _app_id, ("app_id",), "the Faust app id (the processors' consumer group)"),
    Setting("CIOPROC_TOPICS_FILE", "topics.yaml", _path, ("topics_file",), "the topics file"),
    Setting("CIOPROC_STORE", "memory", _store, ("store",), "the users table store: memory or rocksdb"),
    Setting("CIOPROC_DATA_DIR", ".cioproc/worker", _path, ("data_dir",), "where the worker keeps table data"),
    Setting("CIOPROC_METRICS_PORT", "9108", _number(int, 0, 65535), ("metrics_port",), "metrics and health port"),
    Setting("CIOPROC_METRICS_HOST", "127.0.0.1", _listen_address, ("metrics_host",),
            "the address the metrics server listens on"),
    Setting("CIOPROC_LOG_LEVEL", "info",
            _choice(("info", "debug", "warning", "error"), "must be debug, info, warning or error"),
            ("log_level",), "debug, info, warning or error"),
    Setting("CIOPROC_ENV_FILE", ".env", _path, (), "the optional env file (read before the others)"),
)

# Every variable the code reads, with its default (None: unset). The README's table and
# docker-compose.yml are checked against this list by tests.
VARIABLES: dict[str, str | None] = {setting.variable: setting.default for setting in SETTINGS}
_BY_VARIABLE = {setting.variable: setting for setting in SETTINGS}
_BY_FIELD = {path: setting for setting in SETTINGS for path in setting.fields}
ENV_FILE = SETTINGS[-1]  # CIOPROC_ENV_FILE: read before the others, to find them


def _setting(variable: str) -> Setting:
    return _BY_VARIABLE[variable]


def setting_for(field_path: str) -> Setting:
    """The setting that fills a :class:`Config` attribute (``"app_id"``, ``"kafka.sasl_username"``)."""
    return _BY_FIELD[field_path]


def _default(field_path: str) -> Any:
    """The parsed default of a Config attribute: the dataclasses' defaults come from the table."""
    setting = setting_for(field_path)
    return setting.parse(setting.variable, setting.default, None)[0]


def _defaults(prefix: str) -> dict[str, Any]:
    """Parsed defaults of the fields under ``prefix`` ("mapping.", "kafka.")."""
    return {path[len(prefix):]: _default(path) for path in _BY_FIELD if path.startswith(prefix)}


