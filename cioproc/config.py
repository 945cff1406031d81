"""Configuration from environment variables (and an optional `.env`-style file), validated once.

Every problem is reported, one line each, before anything starts. Secrets (the Customer.io
API key, the Kafka SASL password) are held in :class:`Secret`, whose ``str`` and ``repr``
are masked, so they cannot reach a log line or an exception message by accident.
"""

from __future__ import annotations

import io
import ipaddress
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cioproc.errors import ConfigurationError
from cioproc.models.settings import MappingSettings, UserIdType

REGION_HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}
SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
SASL_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"}
ROLES = ("processor", "sender", "all")
SASL_WITH_PASSWORD = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}  # need KAFKA_SASL_USERNAME and _PASSWORD
_HOST_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?")
# up to the last @ of a URL (a password may hold one)
_USER_INFO = re.compile(r"(^|,)(\s*[A-Za-z][A-Za-z0-9+.-]*://)?[^,\s]*@")

class ConfigError(ConfigurationError, ValueError):
    """One or more configuration problems; ``problems`` holds one line each."""

    label = "config error"

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return list(self.problems)


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


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
    problem = _track_url_problem(text)
    return text.rstrip("/"), (f"{name}={mask_user_info(text)!r} {problem}" if problem else None)


def _user_id_type(name: str, text: str | None, raw: str | None) -> Parsed:
    try:
        return UserIdType((text or "").lower()), None
    except ValueError:
        return UserIdType.PREFER_CUSTOMER_ID, f"{name}={raw!r} must be customer_id, email or prefer_customer_id"


def _listen_address(name: str, text: str | None, raw: str | None) -> Parsed:
    host = text or ""
    return host, (None if _listen_host(host) else f"{name}={host!r} must be an IP address or a host name to listen on")


def _bootstrap(name: str, text: str | None, raw: str | None) -> Parsed:
    value = text or ""
    if all(_host_port(part) for part in value.split(",")):
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
    if value == "rocksdb" and not _rocksdb_installed():
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



@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = field(default_factory=lambda: _default("kafka.bootstrap_servers"))
    security_protocol: str = field(default_factory=lambda: _default("kafka.security_protocol"))
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (bootstrap excluded)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.reveal() if self.sasl_password else None
        if "SSL" in self.security_protocol:
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kwargs


@dataclass(frozen=True)
class Config:
    """The effective configuration of a cioproc process (defaults: those of :data:`SETTINGS`)."""

    site_id: str | None = None
    api_key: Secret | None = None
    region: str = field(default_factory=lambda: _default("region"))
    track_url: str | None = None
    mapping: MappingSettings = field(default_factory=lambda: MappingSettings(**_defaults("mapping.")))
    transport: str = field(default_factory=lambda: _default("transport"))
    max_requests_per_second: float = field(default_factory=lambda: _default("max_requests_per_second"))
    max_concurrency: int = field(default_factory=lambda: _default("max_concurrency"))
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    app_id: str = field(default_factory=lambda: _default("app_id"))
    topics_file: Path = field(default_factory=lambda: _default("topics_file"))
    store: str = field(default_factory=lambda: _default("store"))
    data_dir: Path = field(default_factory=lambda: _default("data_dir"))
    metrics_port: int = field(default_factory=lambda: _default("metrics_port"))
    metrics_host: str = field(default_factory=lambda: _default("metrics_host"))
    log_level: str = field(default_factory=lambda: _default("log_level"))

    @property
    def track_base_url(self) -> str:
        return self.track_url or REGION_HOSTS[self.region]

    def warnings(self) -> list[str]:
        """Accepted but worth a log line at start (plain http to a loopback track URL)."""
        if self.track_url and self.track_url.startswith("http://"):
            return [f"CIO_TRACK_URL={self.track_url} is plain http: accepted only because the host is loopback "
                    f"(a local sandbox); the API key would cross any other network in clear"]
        return []

    def require_sender_credentials(self) -> None:
        """Raise ConfigError unless the sender can authenticate."""
        problems = []
        if not self.site_id:
            problems.append("CIO_SITE_ID is not set: the sender needs the Site ID of your Customer.io workspace")
        if not self.api_key:
            problems.append("CIO_API_KEY is not set: the sender needs the Track API key of your Customer.io workspace")
        if problems:
            raise ConfigError(problems)

    def masked(self) -> dict[str, str]:
        """Every variable with its effective value, secrets masked, for `cioproc config`."""
        values: dict[str, str] = {}
        for setting in SETTINGS:
            if not setting.fields:
                continue  # read before parsing (CIOPROC_ENV_FILE)
            value = attrgetter(setting.fields[0])(self)
            if setting.secret:
                value = _mask(value)
            elif isinstance(value, Enum):
                value = value.value
            values[setting.variable] = "" if value is None else mask_user_info(_text(value))
        return values


def _mask(secret: Secret | None) -> str | None:
    return "****" if secret else None  # never its length


def mask_user_info(text: str) -> str:
    """``text`` with the user info of any URL or ``user@host`` in it replaced by ``****``."""
    return _USER_INFO.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}****@", text)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file as docker compose reads it (python-dotenv's parser: ``export``, #
    comments, inline comments after unquoted values, single and double quotes, escapes and
    multi-line values in double quotes; no ``${VAR}`` interpolation). A line that is not
    ``KEY=VALUE`` is a ConfigError naming the file and line."""
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"CIOPROC_ENV_FILE={str(path)!r} is not UTF-8 text (byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"CIOPROC_ENV_FILE={str(path)!r}: cannot read it: {exc.strerror or exc}"]) from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.key is None and not binding.error:
            continue  # blank line or comment
        key = binding.key or ""
        if binding.error or binding.value is None or not key.replace("_", "").isalnum() or not key.isascii():
            raise ConfigError([f"{path}:{binding.original.line}: expected KEY=VALUE"])
        values[key] = binding.value
    return values


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """The configuration from the environment, with a `.env` file filling gaps; ConfigError lists every problem."""
    env = dict(os.environ if environ is None else environ)
    env_file = Path(env.get(ENV_FILE.variable, ENV_FILE.default or ""))
    if env_file.is_file():
        for key, value in read_env_file(env_file).items():
            env.setdefault(key, value)
    return parse_config(env)


def parse_config(env: Mapping[str, str]) -> Config:
    """Validate variables (no file, no os.environ): pure, for tests and the CLI. Each variable
    is parsed as :data:`SETTINGS` says; then the checks that involve several of them."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.variable)
        text = setting.default if raw is None or raw.strip() == "" else raw.strip()
        value, problem = setting.parse(setting.variable, text, raw)
        if problem is not None:
            problems.append(problem)
        for path in setting.fields:
            values[path] = value

    protocol, mechanism = values["kafka.security_protocol"], values["kafka.sasl_mechanism"]
    if protocol.startswith("SASL") and mechanism is None:
        problems.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM")
    if protocol.startswith("SASL") and mechanism in SASL_WITH_PASSWORD:
        for path in ("kafka.sasl_username", "kafka.sasl_password"):
            if values[path] is None:
                name = setting_for(path).variable
                problems.append(f"{name} is not set: KAFKA_SASL_MECHANISM={mechanism} needs a username and password")
    kafka = KafkaSettings(**_under(values, "kafka."))
    problems.extend(_ssl_file_problems(kafka))
    if problems:
        raise ConfigError(problems)
    top = {path: value for path, value in values.items() if "." not in path}
    return Config(**top, mapping=MappingSettings(**_under(values, "mapping.")), kafka=kafka)


def _under(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {path[len(prefix):]: value for path, value in values.items() if path.startswith(prefix)}


def _listen_host(host: str) -> bool:
    """An IP address (v4 or v6) or a DNS host name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?", host))


def _host_port(part: str) -> bool:
    host, sep, port = part.strip().rpartition(":")
    return bool(sep and _valid_host(host) and port.isdigit() and 0 < int(port) < 65536)


def _valid_host(host: str) -> bool:
    """A DNS name or IPv4 address (a trailing dot allowed), or an IPv6 address in brackets."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return bool(_HOST_NAME.fullmatch(host))


def _is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1, with or without a trailing dot (``host`` as in a URL)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _track_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the Track API base URL (None: it can)."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https") or not rest:
        return "must be an http:// or https:// URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a broken IPv6 literal
        return f"is not a valid URL ({exc}): use https://host[:port]"
    if "@" in parts.netloc:
        return "must not carry user info: set CIO_SITE_ID and CIO_API_KEY instead"
    host = parts.netloc.rpartition(":")[0] if parts.port is not None or parts.netloc.endswith(":") else parts.netloc
    if not _valid_host(host):
        return "has no valid host (an IPv6 address goes in brackets: https://[::1]:8443)"
    if port == 0:
        return "has port 0: use a TCP port from 1 to 65535"
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must be the API's base URL alone (https://host[:port]): no path, query or fragment"
    if scheme == "http" and not _is_loopback(host):
        return "uses plain http to a host that is not loopback: use https (http only for localhost, 127.0.0.0/8, ::1)"
    return None


def _ssl_file_problems(kafka: KafkaSettings) -> list[str]:
    """One line per KAFKA_SSL_* file that is missing, unreadable or not PEM, or a key that does not fit."""
    problems = []
    ca, cert, key = (setting_for(f"kafka.ssl_{kind}").variable for kind in ("cafile", "certfile", "keyfile"))
    expected = {ca: (kafka.ssl_cafile, b"-----BEGIN CERTIFICATE-----"),
                cert: (kafka.ssl_certfile, b"-----BEGIN CERTIFICATE-----"),
                key: (kafka.ssl_keyfile, b"PRIVATE KEY-----")}
    for name, (value, marker) in expected.items():
        if value is None:
            continue
        try:
            content = Path(value).read_bytes()
        except OSError as exc:
            problems.append(f"{name}={value!r} is not a readable file ({exc.strerror or exc})")
            continue
        if marker not in content:
            kind = "private key" if name == key else "certificate"
            problems.append(
                f"{name}={value!r} is not a PEM {kind} (expected a '-----BEGIN ...{kind.upper()}-----' block)"
            )
    if problems:
        return problems
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if kafka.ssl_cafile:
        try:
            context.load_verify_locations(cafile=kafka.ssl_cafile)
        except ssl.SSLError as exc:
            problems.append(f"KAFKA_SSL_CAFILE={kafka.ssl_cafile!r} cannot be loaded as CA certificates ({exc.reason})")
    if kafka.ssl_keyfile and not kafka.ssl_certfile:
        problems.append("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE: set both for a client certificate")
    elif kafka.ssl_certfile:
        try:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, password=lambda: b"")
        except ssl.SSLError as exc:
            name = key if kafka.ssl_keyfile else cert
            problems.append(f"{name}={(kafka.ssl_keyfile or kafka.ssl_certfile)!r} does not load with the certificate "
                            f"of KAFKA_SSL_CERTFILE ({exc.reason}; encrypted keys are not supported)")
    return problems


def _rocksdb_installed() -> bool:
    try:
        import rocksdict  # noqa: F401  (the `rocksdb` extra)
    except ImportError:
        return False
    return True

