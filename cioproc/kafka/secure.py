"""`cioproc kafka start --secure`: the local broker with authentication and TLS.

The same single-node Kafka as :class:`~cioproc.kafka.broker.LocalBroker`, with no
unauthenticated listener:

- ``SASL_SSL`` on the port: SCRAM-SHA-512, the user created when the storage is formatted
  (``kafka-storage format --add-scram``); the clients' settings are written to
  ``.cioproc/kafka/<port>/client.env``;
- ``SSL`` with a required client certificate (mutual TLS) on port + 2, also the
  inter-broker listener; settings in ``client-mtls.env``;
- the KRaft controller on port + 1, mutual TLS as well.

A CA, the broker's certificate and a client certificate are generated with ``openssl``
for each broker directory (kept with its data, so a restart keeps its users and files).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cioproc.kafka.broker import BrokerError, LocalBroker, answers_metadata
from cioproc.kafka.processes import port_open

SCRAM_MECHANISM = "SCRAM-SHA-512"
CLIENT_USER = "cioproc"
CERT_DAYS = 825
SERVER_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
)
CLIENT_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=clientAuth\n"
)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate and key (PEM files)."""

    cert: Path
    key: Path


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise BrokerError(
            "openssl is needed to generate the certificates of `cioproc kafka start --secure`; install it"
        )
    return path


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"{' '.join(args[:3])} failed: {result.stderr.strip()[-500:]}")


def make_ca(directory: Path, name: str = "cioproc local Kafka CA") -> CertificateAuthority:
    """A new self-signed CA (EC P-256) in ``directory``: ``ca.pem`` and ``ca.key``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(directory / "ca.pem", directory / "ca.key")
    _run([
        _openssl(), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(ca.key), "-out", str(ca.cert), "-days", str(CERT_DAYS), "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ])  # fmt: skip
    ca.key.chmod(0o600)
    return ca


def issue_certificate(
    ca: CertificateAuthority, directory: Path, stem: str, common_name: str, extensions: str
) -> tuple[Path, Path]:
    """A key and a certificate signed by ``ca``: ``<stem>.pem`` (certificate) and ``<stem>.key``."""
    key, cert = directory / f"{stem}.key", directory / f"{stem}.pem"
    csr, ext = directory / f"{stem}.csr", directory / f"{stem}.ext"
    ext.write_text(extensions)
    openssl = _openssl()
    _run([
        openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}",
    ])  # fmt: skip
    _run([
        openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", str(secrets.randbits(63)), "-days", str(CERT_DAYS), "-out", str(cert), "-extfile", str(ext),
    ])  # fmt: skip
    csr.unlink()
    ext.unlink()
    key.chmod(0o600)
    return cert, key


def write_env_file(path: Path, values: dict[str, str], comment: str) -> None:
    """KEY=VALUE lines readable by ``CIOPROC_ENV_FILE`` and by a shell, only for this user."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(f"# {comment}\n" + "".join(f"{key}={value}\n" for key, value in values.items()))


@dataclass(frozen=True)
class SecureBroker(LocalBroker):
    """The local broker with SASL_SSL on ``port``, the controller on +1 and mutual TLS on +2."""

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def client_env_file(self) -> Path:
        return self.root / "client.env"

    @property
    def mtls_env_file(self) -> Path:
        return self.root / "client-mtls.env"

    @property
    def mtls_port(self) -> int:
        return self.port + 2

    @property
    def mtls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def _password_file(self) -> Path:
        return self.tls_dir / "scram-password"

    def password(self) -> str:
        try:
            return self._password_file.read_text().strip()
        except OSError:
            raise BrokerError(f"{self._password_file} is missing; remove {self.root} and start again") from None

    def client_settings(self) -> dict[str, str]:
        """The SASL_SSL client's variables, as written to client.env."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "KAFKA_SASL_USERNAME": CLIENT_USER,
            "KAFKA_SASL_PASSWORD": self.password(),
            "KAFKA_SSL_CAFILE": str(self.tls_dir / "ca.pem"),
        }

    def mtls_settings(self) -> dict[str, str]:
        """The mutual-TLS client's variables, as written to client-mtls.env."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.mtls_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": str(self.tls_dir / "ca.pem"),
            "KAFKA_SSL_CERTFILE": str(self.tls_dir / "client.pem"),
            "KAFKA_SSL_KEYFILE": str(self.tls_dir / "client.key"),
        }

    def answers(self, timeout: float) -> bool:
        return answers_metadata(self.bootstrap, timeout=timeout, **_client_kwargs(self.client_settings()))

    def listener_settings(self) -> list[str]:
        tls = self.tls_dir
        return [
            f"listeners=SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.port + 1},"
            f"SSL://127.0.0.1:{self.mtls_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{self.port},SSL://127.0.0.1:{self.mtls_port}",
            "inter.broker.listener.name=SSL",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:SSL",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls / 'broker-keystore.pem'}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls / 'ca.pem'}",
            "listener.name.ssl.ssl.client.auth=required",
            "listener.name.controller.ssl.client.auth=required",
        ]

    def format_options(self) -> list[str]:
        return ["--add-scram", f"{SCRAM_MECHANISM}=[name={CLIENT_USER},password={self.password()}]"]

    def start(self, progress: Callable[[str], object] = print) -> bool:
        if self.pid() is None:
            for port in (self.port + 1, self.mtls_port):
                if port_open(port):
                    raise BrokerError(
                        f"port {port} (used by the secure broker on {self.port}) is already in use; "
                        "choose another --port"
                    )
            self.prepare(progress)
        return super().start(progress)

    def prepare(self, progress: Callable[[str], object] = print) -> None:
        """Certificates, the SCRAM password and the client env files, unless they exist already."""
        self.root.mkdir(parents=True, exist_ok=True)
        tls = self.tls_dir
        if not (tls / "broker-keystore.pem").exists():
            if (self.data_dir / "meta.properties").exists():
                raise BrokerError(
                    f"{self.root} holds a plaintext broker's data; remove it to start a secure broker there"
                )
            progress(f"kafka: generating a CA and certificates in {tls}")
            shutil.rmtree(tls, ignore_errors=True)
            ca = make_ca(tls)
            issue_certificate(ca, tls, "client", CLIENT_USER, CLIENT_EXTENSIONS)
            self._password_file.touch(mode=0o600)
            self._password_file.write_text(secrets.token_hex(20))
            cert, key = issue_certificate(ca, tls, "broker", "localhost", SERVER_EXTENSIONS)
            keystore = tls / "broker-keystore.pem"  # written last: it marks the directory as complete
            keystore.touch(mode=0o600)
            keystore.write_text(key.read_text() + cert.read_text())
        header = f"Kafka client settings for the secure local broker on port {self.port}"
        write_env_file(self.client_env_file, self.client_settings(), f"{header} (SASL_SSL, {SCRAM_MECHANISM})")
        write_env_file(self.mtls_env_file, self.mtls_settings(), f"{header} (mutual TLS on port {self.mtls_port})")


def _client_kwargs(settings: dict[str, str]) -> dict[str, Any]:
    from cioproc.config import parse_config

    return parse_config({**settings, "CIOPROC_ENV_FILE": "/nonexistent"}).kafka.aiokafka_kwargs()


def is_secure(broker: LocalBroker) -> bool:
    """True if the broker's directory was set up by ``--secure``."""
    return (broker.root / "tls" / "broker-keystore.pem").exists()


def choose(broker: LocalBroker, secure: bool, starting: bool) -> LocalBroker:
    """The broker to act on: a SecureBroker when asked for or when its directory is a secure one."""
    if secure or is_secure(broker):
        if starting and not secure:
            raise BrokerError(
                f"{broker.root} holds a secure broker; start it with --secure, or remove that directory"
            )
        return SecureBroker(home=broker.home, port=broker.port, heap=broker.heap)
    return broker


def announce(broker: LocalBroker) -> None:
    """Tell where a secure broker's client settings are."""
    if isinstance(broker, SecureBroker):
        print(f"kafka: SASL_SSL ({SCRAM_MECHANISM}) on {broker.bootstrap}; client settings in {broker.client_env_file}")
        print(f"kafka: mutual TLS on {broker.mtls_bootstrap}; client settings in {broker.mtls_env_file}")
        print(f"kafka: use them with `CIOPROC_ENV_FILE={broker.client_env_file} cioproc ...`")
