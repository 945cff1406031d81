"""A real single-node Apache Kafka (KRaft) on 127.0.0.1 for development, tests and the demo.

The broker's jars come from Maven Central through the small POM beside this file, copied
once into a project-local cache (``.cioproc/kafka/jars-<version>``) and reused. Storage is
formatted on first start; the broker runs as a detached JVM whose pid and log live next to
its data (``.cioproc/kafka/<port>/``).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cioproc.kafka.processes import (
    BrokerError,
    answers_metadata,
    command_line,
    java_runtime,
    port_open,
    process_alive,
    signal_group,
)

__all__ = [
    "BROKER_SETTINGS", "DEFAULT_PORT", "KAFKA_VERSION", "POM", "BrokerError", "LocalBroker", "answers_metadata", "main",
]

POM = Path(__file__).with_name("pom.xml")
KAFKA_VERSION = "4.4.0"  # keep in step with pom.xml and docker-compose.yml
DEFAULT_PORT = 9092
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

# Settings shared by the local broker and docker-compose.yml's (tests compare the two).
BROKER_SETTINGS = {
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "8",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "log.cleaner.backoff.ms": "1000",
}

LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


DOWNLOADED = "Downloaded from "  # Maven's line for each file it fetched (batch mode)

@dataclass(frozen=True)
class LocalBroker:
    """Where one local broker keeps its files, and how to reach it."""

    home: Path
    port: int = DEFAULT_PORT
    heap: str = "1g"

    @classmethod
    def from_env(cls, port: int | None = None) -> LocalBroker:
        home = Path(os.environ.get("CIOPROC_HOME", ".cioproc")).resolve()
        if port is not None:
            chosen = _tcp_port("--port", str(port))
        else:
            env_port = (os.environ.get("CIOPROC_KAFKA_PORT") or "").strip()
            chosen = _tcp_port("CIOPROC_KAFKA_PORT", env_port) if env_port else DEFAULT_PORT
        return cls(home=home, port=chosen, heap=os.environ.get("CIOPROC_KAFKA_HEAP", "1g"))

    @property
    def jars(self) -> Path:
        return self.home / "kafka" / f"jars-{KAFKA_VERSION}"

    @property
    def root(self) -> Path:
        return self.home / "kafka" / str(self.port)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---- status -------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.root / "server.properties"

    def pid(self) -> int | None:
        """The broker's pid if its process is alive and is this broker, else None."""
        pid = self._recorded_pid()
        return pid if pid is not None and process_alive(pid) and self._is_ours(pid) else None

    def _recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """True if ``pid`` runs this broker: ``kafka.Kafka`` with this broker's config file."""
        argv = command_line(pid)
        return argv is not None and "kafka.Kafka" in argv and str(self.config_file) in argv

    def stale_pid_note(self) -> str | None:
        """What to say when the pid file names a live process that is not this broker."""
        pid = self._recorded_pid()
        if pid is None or not process_alive(pid) or self._is_ours(pid):
            return None
        argv = command_line(pid)
        shown = " ".join(argv)[:200] if argv else "unknown"
        return (f"kafka: {self.pid_file} names pid {pid}, which is not this broker (its command line: {shown}); "
                f"not signalled")

    def is_running(self) -> bool:
        return self.pid() is not None and self.answers(timeout=5.0)

    def answers(self, timeout: float) -> bool:
        """True if the broker answers a metadata request on its client listener."""
        return answers_metadata(self.bootstrap, timeout=timeout)

    # ---- start --------------------------------------------------------------------------

    def start(self, progress: Callable[[str], object] = print) -> bool:
        """Start the broker unless it runs already; return True if this call started it."""
        if self.pid() is not None:
            if self.answers(timeout=10.0):
                progress(f"kafka: already running on {self.bootstrap} (pid {self.pid()})")
                return False
            raise BrokerError(
                f"a broker process (pid {self.pid()}) exists for port {self.port} but does not "
                f"answer; run `cioproc kafka stop --port {self.port}` first. Log: {self.log_file}"
            )
        if port_open(self.port):
            raise BrokerError(
                f"port {self.port} is already in use by another process; choose another with "
                f"--port or stop what listens there"
            )
        java = _java()
        self.fetch_jars(progress)
        self.root.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            progress(f"kafka: formatting storage in {self.data_dir}")
            self._run_storage_format(java, props)
        progress(f"kafka: starting Apache Kafka {KAFKA_VERSION} (KRaft) on {self.bootstrap}")
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            [
                java,
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.root / 'log4j2.yaml'}",
                "-cp",
                f"{self.jars}/*",
                "kafka.Kafka",
                str(props),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"kafka exited with code {proc.returncode}:\n{self.log_tail()}")
            if self.answers(timeout=2.0):
                progress(f"kafka: ready on {self.bootstrap} (pid {proc.pid})")
                return True
            time.sleep(0.3)
        self.stop(progress=lambda _m: None)
        raise BrokerError(
            f"kafka did not answer a metadata request within {START_TIMEOUT_S:.0f}s:\n"
            f"{self.log_tail()}"
        )

    def fetch_jars(self, progress: Callable[[str], object] = print) -> Path:
        """Copy the broker's jars from Maven Central into the cache, unless cached already."""
        marker = self.jars / ".complete"
        if marker.exists():
            return self.jars
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
        progress(f"kafka: fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central")
        tmp = self.jars.with_name(self.jars.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        from cioproc.ops.progress import Progress

        bar = Progress("kafka: downloaded")
        process = subprocess.Popen(  # -B without -q: one "Downloaded from" line per file, counted below
            [mvn, "-B", "-f", str(POM), "dependency:copy-dependencies", f"-Dkafka.version={KAFKA_VERSION}",
             "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        output: list[str] = []
        downloaded = 0
        for line in process.stdout or ():
            output.append(line)
            if DOWNLOADED in line:
                downloaded += 1
                bar.update(downloaded, unit=" files from Maven Central")
        if downloaded:
            bar.finish()
        if process.wait() != 0:
            raise BrokerError(f"mvn failed to fetch Kafka jars:\n{''.join(output)[-5000:]}")
        if not any(tmp.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            raise BrokerError(f"mvn finished but {tmp} has no kafka_2.13-{KAFKA_VERSION}.jar")
        (tmp / ".complete").write_text(KAFKA_VERSION)
        shutil.rmtree(self.jars, ignore_errors=True)
        tmp.rename(self.jars)
        return self.jars

    def listener_settings(self) -> list[str]:
        """The listener lines of server.properties (a secure broker replaces them)."""
        controller_port = self.port + 1
        return [
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]

    def format_options(self) -> list[str]:
        """Extra `kafka-storage format` options (a secure broker adds its SCRAM users)."""
        return []

    def _write_config(self) -> Path:
        controller_port = self.port + 1
        props = self.config_file
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    "controller.listener.names=CONTROLLER",
                    *self.listener_settings(),
                    f"log.dirs={self.data_dir}",
                    *(f"{key}={value}" for key, value in BROKER_SETTINGS.items()),
                    "",
                ]
            )
        )
        (self.root / "log4j2.yaml").write_text(LOG4J2)
        return props

    def _run_storage_format(self, java: str, props: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={self.root / 'log4j2.yaml'}",
                "-cp",
                f"{self.jars}/*",
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",  # one token: an id may start with "-"
                "-c",
                str(props),
                *self.format_options(),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    # ---- stop ---------------------------------------------------------------------------

    def stop(self, progress: Callable[[str], object] = print) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after a bound); True if it ran."""
        pid = self.pid()
        if pid is None:
            note = self.stale_pid_note()
            if note:
                progress(f"{note}; stale pid file removed")
            self.pid_file.unlink(missing_ok=True)
            progress(f"kafka: not running on port {self.port}")
            return False
        progress(f"kafka: stopping pid {pid}")
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if process_alive(pid):
            progress(f"kafka: pid {pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s; killing it")
            signal_group(pid, signal.SIGKILL)
            while process_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        progress("kafka: stopped")
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _java() -> str:
    """A Java runtime the broker can run on (see :func:`cioproc.kafka.processes.java_runtime`)."""
    return java_runtime(f"Kafka {KAFKA_VERSION}")


def _tcp_port(name: str, text: str) -> int:
    """``text`` as a listener port (its controller listens on the next one); BrokerError naming ``name``."""
    if not text.isdigit() or not 0 < int(text) < 65535:
        raise BrokerError(f"{name}={text!r} must be a TCP port number from 1 to 65534")
    return int(text)


def main(action: str, port: int | None = None, secure: bool = False) -> int:
    """`cioproc kafka start|stop|status` (``secure``: start with SASL_SSL and mutual-TLS listeners);
    a BrokerError goes to the command line, which prints it."""
    from cioproc.kafka import secure as secure_broker

    broker = secure_broker.choose(LocalBroker.from_env(port), secure=secure, starting=action == "start")
    if action == "start":
        broker.start()
        secure_broker.announce(broker)
    elif action == "stop":
        broker.stop()
    elif action == "status":
        if broker.is_running():
            print(f"kafka: running on {broker.bootstrap} (pid {broker.pid()})")
        else:
            note = broker.stale_pid_note()
            if note:
                print(note)
            print(f"kafka: not running on port {broker.port}")
            return 1
    else:
        raise BrokerError(f"unknown action {action!r}")
    return 0
