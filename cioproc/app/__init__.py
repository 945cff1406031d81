"""The cioproc Faust app: ``faust -A cioproc.app worker`` or ``cioproc worker --role ROLE``.

``app`` is built on first access (not at import), for the role in ``$CIOPROC_ROLE``
(``processor``, ``sender`` or ``all``; default ``all``), the app id in
``$CIOPROC_APP_ID`` (default ``cioproc``) and cioproc's configuration, exactly as
``cioproc worker`` builds it (:func:`cioproc.app.worker.prepare_app`): JSON logs with secrets
redacted, a configuration problem printed as one line (no traceback, also for ``--help``),
and Faust's own web server off unless the command line asks for it (``--with-web``,
``--web-port``, ...). Use :func:`cioproc.app.factory.create_app` to build one explicitly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

ROLE_VARIABLE = "CIOPROC_ROLE"
# `faust worker` options that ask for its web server (it is on by default there).
WEB_OPTIONS = ("--with-web", "--web-port", "--web-bind", "--web-host", "--web-transport", "-p", "-b")

__all__ = ["ROLE_VARIABLE", "app"]

_app: Any = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            _app = faust_command_app(sys.argv)
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def faust_command_app(argv: Sequence[str]) -> Any:
    """The app for the ``faust`` command line (``argv``); SystemExit after one line per problem."""
    from cioproc.app.worker import CommandLineWorker, prepare_app
    from cioproc.errors import CioprocError

    try:
        app = prepare_app((os.environ.get(ROLE_VARIABLE) or "all").strip().lower())
    except CioprocError as exc:
        for line in exc.lines():
            print(f"{exc.label}: {line}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    # Keeps cioproc's logging (`faust worker` would replace it); faust types the setting loosely.
    app.conf.Worker = CommandLineWorker  # type: ignore[assignment]
    if not any(arg.split("=", 1)[0] in WEB_OPTIONS for arg in argv):
        app.boot_strategy.enable_web = False  # overrides the --with-web default of `faust worker`
    return app
