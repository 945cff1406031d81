"""Configuration of a sandbox server."""

from __future__ import annotations

from dataclasses import dataclass, field

from cioproc.sandbox.faults import FaultConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_SITE_ID = "sandbox-site"
DEFAULT_API_KEY = "sandbox-key"


@dataclass(slots=True)
class SandboxConfig:
    """Where the sandbox listens, the credentials it accepts and the faults it injects.

    ``port=0`` picks a free port (see :func:`cioproc.sandbox.server.serve`). The API key is
    left out of ``repr`` so it cannot leak through logs of this object.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    site_id: str = DEFAULT_SITE_ID
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    faults: FaultConfig = field(default_factory=FaultConfig)
    # Workspace setting "Allow updates to email using ID" (off: changing an email that is
    # already set needs the cio_id form, as the identify documentation describes).
    allow_email_update_by_id: bool = False
    region: str = "us"
    environment_id: int = 1
