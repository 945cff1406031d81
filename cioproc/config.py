"""Configuration from environment variables (and an optional `.env`-style file), validated once.

Every problem is reported, one line each, before anything starts. Secrets (the Customer.io
API key, the Kafka SASL password) are held in :class:`Secret`, whose ``str`` and ``repr``
are masked, so they cannot reach a log line or an exception message by accident.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cioproc.models.settings import MappingSettings, UserIdType

REGION_HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}
SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
SASL_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"}
ROLES = ("processor", "sender", "all")

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
    "CIOPROC_LOG_LEVEL": "info",
    "CIOPROC_ENV_FILE": ".env",
}


class ConfigError(ValueError):
    """One or more configuration problems; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


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
    log_level: str = "info"

    @property
    def track_base_url(self) -> str:
        return self.track_url or REGION_HOSTS[self.region]

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
            "CIOPROC_LOG_LEVEL": self.log_level,
        }
        return {key: "" if value is None else _text(value) for key, value in values.items()}


def _mask(secret: Secret | None) -> str | None:
    if not secret:
        return None
    return "****" + ("" if len(secret.reveal()) < 12 else f" ({len(secret.reveal())} chars)")


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
    for binding in parse_stream(io.StringIO(path.read_text())):
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
            if value < minimum:
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
        if not track_url.startswith(("http://", "https://")) or len(track_url.split("://", 1)[1]) == 0:
            problems.append(f"CIO_TRACK_URL={track_url!r} must be an http:// or https:// URL")
        track_url = track_url.rstrip("/")
    id_type_raw = (get("CIO_USER_ID_TYPE") or "").lower()
    try:
        user_id_type = UserIdType(id_type_raw)
    except ValueError:
        problems.append(
            f"CIO_USER_ID_TYPE={env.get('CIO_USER_ID_TYPE')!r} must be customer_id, email or prefer_customer_id"
        )
        user_id_type = UserIdType.PREFER_CUSTOMER_ID
    mapping = MappingSettings(
        user_id_type=user_id_type,
        include_user_attributes=boolean("CIO_INCLUDE_USER_ATTRIBUTES"),
        send_created_at=boolean("CIO_SEND_CREATED_AT"),
        audience_attribute_per_segment=boolean("CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT"),
    )
    transport = (get("CIO_TRANSPORT") or "").lower()
    if transport not in ("v1", "v2"):
        problems.append(f"CIO_TRANSPORT={env.get('CIO_TRANSPORT')!r} must be v2 (batch API) or v1 (one request per command)")
        transport = "v2"
    rps = number("CIO_MAX_REQUESTS_PER_SECOND", float, 0.1)
    concurrency = number("CIO_MAX_CONCURRENCY", int, 1)
    metrics_port = number("CIOPROC_METRICS_PORT", int, 0)
    if metrics_port > 65535:
        problems.append(f"CIOPROC_METRICS_PORT={metrics_port} is not a TCP port")

    bootstrap = get("KAFKA_BOOTSTRAP_SERVERS") or ""
    if not all(_host_port(part) for part in bootstrap.split(",")):
        problems.append(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} must be host:port[,host:port...]")
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
    for name in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
        value = get(name)
        if value is not None and not Path(value).is_file():
            problems.append(f"{name}={value!r} is not a readable file")

    store = (get("CIOPROC_STORE") or "").lower()
    if store not in ("memory", "rocksdb"):
        problems.append(f"CIOPROC_STORE={env.get('CIOPROC_STORE')!r} must be memory or rocksdb")
        store = "memory"
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
        log_level=log_level,
    )


def _host_port(part: str) -> bool:
    host, sep, port = part.strip().rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)

