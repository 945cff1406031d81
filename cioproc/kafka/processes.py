"""The machine side of the local broker (:mod:`cioproc.kafka.broker`): whether a broker answers,
the Java runtime, processes (alive, their command line, signals) and local ports."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from cioproc.errors import KafkaFailure


class BrokerError(KafkaFailure, RuntimeError):
    """The local broker could not be fetched, started or stopped."""


def answers_metadata(bootstrap: str, timeout: float = 5.0, **client: Any) -> bool:
    """True if a Kafka broker at ``bootstrap`` answers a metadata request in time.

    ``client`` holds aiokafka security settings (``KafkaSettings.aiokafka_kwargs()``)."""
    return asyncio.run(_metadata(bootstrap, int(timeout * 1000), client))


async def _metadata(bootstrap: str, request_timeout_ms: int, security: dict[str, Any]) -> bool:
    import logging

    from aiokafka.client import AIOKafkaClient  # only the shell needs a client

    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)  # "Unable connect" while a broker boots is expected here
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms, **security)
    try:
        async with asyncio.timeout(request_timeout_ms / 1000):
            await client.bootstrap()
        return True
    except Exception:
        return False
    finally:
        try:
            await client.close()
        except Exception:
            pass
        log.setLevel(level)


def java_runtime(needed_by: str) -> str:
    """A Java 17+ runtime (Kafka 4 brokers need 17): JAVA_HOME, else java on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError("no Java runtime found: install Java 17 or newer, or set JAVA_HOME")
    out = subprocess.run([java, "-version"], capture_output=True, text=True)
    text = out.stderr + out.stdout
    try:
        version = text.split('"')[1]
        major = int(version.split(".")[0])
    except (IndexError, ValueError):
        raise BrokerError(f"could not read the Java version from: {text.strip()[:200]}") from None
    if major < 17:
        raise BrokerError(f"{needed_by} needs Java 17 or newer, found {version} at {java}")
    return java


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def command_line(pid: int) -> list[str] | None:
    """The arguments ``pid`` was started with (None: unknown, e.g. gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    try:  # no /proc (macOS): ps gives the command line as one string
        out = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def signal_group(pid: int, sig: int) -> None:
    """Signal the broker's process group (it leads one: started in a new session), else the pid alone."""
    try:
        if os.getpgid(pid) != pid:
            raise PermissionError  # not a group leader: never signal someone else's group
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0

