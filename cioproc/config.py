"""Configuration from environment variables (and an optional `.env`-style file), validated once.

Every problem is reported, one line each, before anything starts. Secrets (the Customer.io
API key, the Kafka SASL password) are held in :class:`Secret`, whose ``str`` and ``repr``
are masked, so they cannot reach a log line or an exception message by accident.
"""

from __future__ import annotations

import io
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from pathlib import Path
from typing import Any

from cioproc.config_table import (
    ENV_FILE,
    SETTINGS,
    VARIABLES,
    Parsed,
    Parser,
    Setting,
    _default,
    _defaults,
    setting_for,
)
from cioproc.config_values import (
    FALSE,
    REGION_HOSTS,
    ROLES,
    SASL_MECHANISMS,
    SASL_WITH_PASSWORD,
    SECURITY_PROTOCOLS,
    TRUE,
    Secret,
    mask_user_info,
)
from cioproc.errors import ConfigurationError
from cioproc.models.settings import MappingSettings

__all__ = [
    "ENV_FILE", "FALSE", "REGION_HOSTS", "ROLES", "SASL_MECHANISMS", "SASL_WITH_PASSWORD", "SECURITY_PROTOCOLS",
    "SETTINGS", "TRUE", "VARIABLES", "Config", "ConfigError", "KafkaSettings", "Parsed", "Parser", "Secret",
    "Setting", "load_config", "mask_user_info", "parse_config", "read_env_file", "setting_for",
]


class ConfigError(ConfigurationError, ValueError):
    """One or more configuration problems; ``problems`` holds one line each."""

    label = "config error"

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return list(self.problems)


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

