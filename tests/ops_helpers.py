"""Helpers for the operator-command tests: a sandbox in a thread of its own, and the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

from cioproc.sandbox import SandboxConfig, serve

REPO = Path(__file__).resolve().parents[1]
SITE, KEY = "ops-site", "ops-key-0123456789abcdef"


class ThreadSandbox:
    """The project's sandbox served from a background thread (the CLI under test runs as a subprocess)."""

    def __init__(self, region: str = "us"):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = SandboxConfig(port=0, site_id=SITE, api_key=KEY, region=region)
        self.runner, port = asyncio.run_coroutine_threadsafe(serve(config), self.loop).result(30)
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def cli_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CIO_", "CIOPROC_"))}
    return {**base, "CIOPROC_ENV_FILE": "/nonexistent", **env}


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cioproc", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env=cli_env(**env),
    )


def problems(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("problem")]
