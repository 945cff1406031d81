"""Configuration of a sandbox server."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cioproc.sandbox.faults import FaultConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_SITE_ID = "sandbox-site"
DEFAULT_API_KEY = "sandbox-key"


@dataclass(slots=True)
class SandboxConfig:
    """Where the sandbox listens, the credentials it accepts and the faults it injects.

    ``port=0`` picks a free port (see :func:`cioproc.sandbox.server.serve`). ``admin_token``
    guards the ``/_sandbox/*`` inspection and control routes (a random one unless given).
    The API key and the token are left out of ``repr`` so they cannot leak through logs.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    site_id: str = DEFAULT_SITE_ID
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    faults: FaultConfig = field(default_factory=FaultConfig)
    # Workspace setting "Allow updates to email using ID" (off: changing an email that is
    # already set needs the cio_id form, as the identify documentation describes).
    allow_email_update_by_id: bool = False
    region: str = "us"
    environment_id: int = 1
