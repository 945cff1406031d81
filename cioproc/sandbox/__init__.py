"""A local Customer.io Track API workspace for development and tests.

``create_app(SandboxConfig(...))`` gives the aiohttp app; ``await serve(config)`` starts it
and returns ``(runner, port)``; ``run(config)`` serves until interrupted; ``main(argv)``
is the ``cioproc sandbox`` command. The workspace model and validation are pure modules
(:mod:`~cioproc.sandbox.workspace`, :mod:`~cioproc.sandbox.validation`).
"""

from cioproc.sandbox.config import SandboxConfig
from cioproc.sandbox.faults import FaultConfig
from cioproc.sandbox.server import SANDBOX, Sandbox, create_app, run, serve

__all__ = ["SANDBOX", "FaultConfig", "Sandbox", "SandboxConfig", "create_app", "run", "serve"]
