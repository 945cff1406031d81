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
from collections.abc import Mapping
from dataclasses import dataclass, field
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

# Every variable the code reads, with its default (None: unset). The README's table and
# docker-compose.yml are checked against this list by tests.
VARIABLES: dict[str, str | None] = {
    "CIO_SITE_ID": None,
    "CIO_API_KEY": None,
    "CIO_REGION": "us",
    "CIO_TRACK_URL": None,
    "CIO_USER_ID_TYPE": "prefer_customer_id",
    "CIO_INCLUDE_USER_ATTRIBUTES": "true",
    "CIO_SEND_CREATED_AT": "false",
    "CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT": "false",
    "CIO_MERGE_PEOPLE": "false",
    "CIO_FORWARD_DEVICES": "false",
    "CIO_ERASURE_ACTION": "delete",
    "CIO_TRANSPORT": "v2",
    "CIO_MAX_REQUESTS_PER_SECOND": "100",
    "CIO_MAX_CONCURRENCY": "8",
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_SASL_MECHANISM": None,
    "KAFKA_SASL_USERNAME": None,
    "KAFKA_SASL_PASSWORD": None,
    "KAFKA_SSL_CAFILE": None,
    "KAFKA_SSL_CERTFILE": None,
    "KAFKA_SSL_KEYFILE": None,
    "CIOPROC_APP_ID": "cioproc",
    "CIOPROC_TOPICS_FILE": "topics.yaml",
    "CIOPROC_STORE": "memory",
    "CIOPROC_DATA_DIR": ".cioproc/worker",
    "CIOPROC_METRICS_PORT": "9108",
    "CIOPROC_METRICS_HOST": "127.0.0.1",
    "CIOPROC_LOG_LEVEL": "info",
    "CIOPROC_ENV_FILE": ".env",
}


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


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "localhost:9092"
    security_protocol: str = "PLAINTEXT"
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
    """The effective configuration of a cioproc process."""

    site_id: str | None = None
    api_key: Secret | None = None
    region: str = "us"
    track_url: str | None = None
    mapping: MappingSettings = field(default_factory=MappingSettings)
    transport: str = "v2"
    max_requests_per_second: float = 100.0
    max_concurrency: int = 8
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    app_id: str = "cioproc"
    topics_file: Path = Path("topics.yaml")
    store: str = "memory"
    data_dir: Path = Path(".cioproc/worker")
    metrics_port: int = 9108
    metrics_host: str = "127.0.0.1"
    log_level: str = "info"

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
        m = self.mapping
        k = self.kafka
        values: dict[str, Any] = {
            "CIO_SITE_ID": self.site_id,
            "CIO_API_KEY": _mask(self.api_key),
            "CIO_REGION": self.region,
            "CIO_TRACK_URL": self.track_url,
            "CIO_USER_ID_TYPE": m.user_id_type.value,
            "CIO_INCLUDE_USER_ATTRIBUTES": m.include_user_attributes,
            "CIO_SEND_CREATED_AT": m.send_created_at,
            "CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT": m.audience_attribute_per_segment,
            "CIO_MERGE_PEOPLE": m.merge_people,
            "CIO_FORWARD_DEVICES": m.forward_devices,
            "CIO_ERASURE_ACTION": m.erasure_action,
            "CIO_TRANSPORT": self.transport,
            "CIO_MAX_REQUESTS_PER_SECOND": self.max_requests_per_second,
            "CIO_MAX_CONCURRENCY": self.max_concurrency,
            "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": k.security_protocol,
            "KAFKA_SASL_MECHANISM": k.sasl_mechanism,
            "KAFKA_SASL_USERNAME": k.sasl_username,
            "KAFKA_SASL_PASSWORD": _mask(k.sasl_password),
            "KAFKA_SSL_CAFILE": k.ssl_cafile,
            "KAFKA_SSL_CERTFILE": k.ssl_certfile,
            "KAFKA_SSL_KEYFILE": k.ssl_keyfile,
            "CIOPROC_APP_ID": self.app_id,
            "CIOPROC_TOPICS_FILE": self.topics_file,
            "CIOPROC_STORE": self.store,
            "CIOPROC_DATA_DIR": self.data_dir,
            "CIOPROC_METRICS_PORT": self.metrics_port,
            "CIOPROC_METRICS_HOST": self.metrics_host,
            "CIOPROC_LOG_LEVEL": self.log_level,
        }
        return {key: "" if value is None else mask_user_info(_text(value)) for key, value in values.items()}


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
    env_file = Path(env.get("CIOPROC_ENV_FILE", ".env"))
    if env_file.is_file():
        for key, value in read_env_file(env_file).items():
            env.setdefault(key, value)
    return parse_config(env)


def parse_config(env: Mapping[str, str]) -> Config:
    """Validate variables (no file, no os.environ): pure, for tests and the CLI."""
    problems: list[str] = []

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return VARIABLES[name]
        return value.strip()

    def boolean(name: str) -> bool:
        value = (get(name) or "").lower()
        if value in TRUE:
            return True
        if value in FALSE:
            return False
        problems.append(f"{name}={env.get(name)!r} is not a boolean (use true or false)")
        return False

    def number(name: str, kind: type, minimum: float) -> Any:
        raw = get(name)
        try:
            value = kind(raw)
            if not math.isfinite(value) or value < minimum:  # nan compares false to everything
                raise ValueError
            return value
        except (TypeError, ValueError):
            problems.append(f"{name}={raw!r} must be a {kind.__name__} >= {minimum}")
            return kind(VARIABLES[name])

    region = (get("CIO_REGION") or "").lower()
    if region not in REGION_HOSTS:
        problems.append(f"CIO_REGION={env.get('CIO_REGION')!r} is not a Customer.io region (use us or eu)")
        region = "us"
    track_url = get("CIO_TRACK_URL")
    if track_url is not None:
        problem = _track_url_problem(track_url)
        if problem:
            problems.append(f"CIO_TRACK_URL={mask_user_info(track_url)!r} {problem}")
        track_url = track_url.rstrip("/")
    id_type_raw = (get("CIO_USER_ID_TYPE") or "").lower()
    try:
        user_id_type = UserIdType(id_type_raw)
    except ValueError:
        problems.append(
            f"CIO_USER_ID_TYPE={env.get('CIO_USER_ID_TYPE')!r} must be customer_id, email or prefer_customer_id"
        )
        user_id_type = UserIdType.PREFER_CUSTOMER_ID
    transport = (get("CIO_TRANSPORT") or "").lower()
    if transport not in ("v1", "v2"):
        problems.append(
            f"CIO_TRANSPORT={env.get('CIO_TRANSPORT')!r} must be v2 (batch API) or v1 (one request per command)"
        )
        transport = "v2"
    erasure_action = (get("CIO_ERASURE_ACTION") or "").lower()
    if erasure_action not in ("delete", "suppress"):
        problems.append(
            f"CIO_ERASURE_ACTION={env.get('CIO_ERASURE_ACTION')!r} must be delete or suppress "
            "(delete and block the identifiers)"
        )
        erasure_action = "delete"
    mapping = MappingSettings(
        user_id_type=user_id_type,
        include_user_attributes=boolean("CIO_INCLUDE_USER_ATTRIBUTES"),
        send_created_at=boolean("CIO_SEND_CREATED_AT"),
        audience_attribute_per_segment=boolean("CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT"),
        transport=transport,
        merge_people=boolean("CIO_MERGE_PEOPLE"),
        forward_devices=boolean("CIO_FORWARD_DEVICES"),
        erasure_action=erasure_action,
    )
    rps = number("CIO_MAX_REQUESTS_PER_SECOND", float, 0.1)
    concurrency = number("CIO_MAX_CONCURRENCY", int, 1)
    metrics_port = number("CIOPROC_METRICS_PORT", int, 0)
    if metrics_port > 65535:
        problems.append(f"CIOPROC_METRICS_PORT={metrics_port} is not a TCP port")
    metrics_host = get("CIOPROC_METRICS_HOST") or "127.0.0.1"
    if not _listen_host(metrics_host):
        problems.append(f"CIOPROC_METRICS_HOST={metrics_host!r} must be an IP address or a host name to listen on")

    bootstrap = get("KAFKA_BOOTSTRAP_SERVERS") or ""
    if not all(_host_port(part) for part in bootstrap.split(",")):
        problems.append(f"KAFKA_BOOTSTRAP_SERVERS={mask_user_info(bootstrap)!r} must be host:port[,host:port...]")
    protocol = (get("KAFKA_SECURITY_PROTOCOL") or "").upper()
    if protocol not in SECURITY_PROTOCOLS:
        problems.append(f"KAFKA_SECURITY_PROTOCOL={protocol!r} must be one of {', '.join(sorted(SECURITY_PROTOCOLS))}")
    mechanism = get("KAFKA_SASL_MECHANISM")
    if mechanism is not None:
        mechanism = mechanism.upper()
        if mechanism not in SASL_MECHANISMS:
            problems.append(f"KAFKA_SASL_MECHANISM={mechanism!r} must be one of {', '.join(sorted(SASL_MECHANISMS))}")
    if protocol.startswith("SASL") and mechanism is None:
        problems.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM")
    password = get("KAFKA_SASL_PASSWORD")
    if protocol.startswith("SASL") and mechanism in SASL_WITH_PASSWORD:
        for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            if get(name) is None:
                problems.append(f"{name} is not set: KAFKA_SASL_MECHANISM={mechanism} needs a username and password")
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=get("KAFKA_SASL_USERNAME"),
        sasl_password=Secret(password) if password else None,
        ssl_cafile=get("KAFKA_SSL_CAFILE"),
        ssl_certfile=get("KAFKA_SSL_CERTFILE"),
        ssl_keyfile=get("KAFKA_SSL_KEYFILE"),
    )
    problems.extend(_ssl_file_problems(kafka))

    store = (get("CIOPROC_STORE") or "").lower()
    if store not in ("memory", "rocksdb"):
        problems.append(f"CIOPROC_STORE={env.get('CIOPROC_STORE')!r} must be memory or rocksdb")
        store = "memory"
    elif store == "rocksdb" and not _rocksdb_installed():
        problems.append("CIOPROC_STORE=rocksdb needs the rocksdb extra: pip install 'cioproc[rocksdb]'")
    log_level = (get("CIOPROC_LOG_LEVEL") or "").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        problems.append(f"CIOPROC_LOG_LEVEL={env.get('CIOPROC_LOG_LEVEL')!r} must be debug, info, warning or error")
        log_level = "info"

    app_id = get("CIOPROC_APP_ID") or "cioproc"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", app_id):
        problems.append(f"CIOPROC_APP_ID={app_id!r} must be letters, digits, '.', '_' or '-' (1-200)")

    api_key = get("CIO_API_KEY")
    if problems:
        raise ConfigError(problems)
    return Config(
        site_id=get("CIO_SITE_ID"),
        api_key=Secret(api_key) if api_key else None,
        region=region,
        track_url=track_url,
        mapping=mapping,
        transport=transport,
        max_requests_per_second=rps,
        max_concurrency=concurrency,
        kafka=kafka,
        app_id=app_id,
        topics_file=Path(get("CIOPROC_TOPICS_FILE") or "topics.yaml"),
        store=store,
        data_dir=Path(get("CIOPROC_DATA_DIR") or ".cioproc/worker"),
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_level=log_level,
    )


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
    expected = {"KAFKA_SSL_CAFILE": (kafka.ssl_cafile, b"-----BEGIN CERTIFICATE-----"),
                "KAFKA_SSL_CERTFILE": (kafka.ssl_certfile, b"-----BEGIN CERTIFICATE-----"),
                "KAFKA_SSL_KEYFILE": (kafka.ssl_keyfile, b"PRIVATE KEY-----")}
    for name, (value, marker) in expected.items():
        if value is None:
            continue
        try:
            content = Path(value).read_bytes()
        except OSError as exc:
            problems.append(f"{name}={value!r} is not a readable file ({exc.strerror or exc})")
            continue
        if marker not in content:
            kind = "private key" if name == "KAFKA_SSL_KEYFILE" else "certificate"
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
            name = "KAFKA_SSL_KEYFILE" if kafka.ssl_keyfile else "KAFKA_SSL_CERTFILE"
            problems.append(f"{name}={(kafka.ssl_keyfile or kafka.ssl_certfile)!r} does not load with the certificate "
                            f"of KAFKA_SSL_CERTFILE ({exc.reason}; encrypted keys are not supported)")
    return problems


def _rocksdb_installed() -> bool:
    try:
        import rocksdict  # noqa: F401  (the `rocksdb` extra)
    except ImportError:
        return False
    return True

