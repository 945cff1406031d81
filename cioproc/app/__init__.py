"""The cioproc Faust app: ``faust -A cioproc.app worker`` or ``cioproc worker --role ROLE``.

``app`` is built on first access (not at import), for the role in ``$CIOPROC_ROLE``
(``processor``, ``sender`` or ``all``; default ``all``), the app id in
``$CIOPROC_APP_ID`` (default ``cioproc``) and cioproc's configuration. Use
:func:`cioproc.app.factory.create_app` to build one explicitly.
"""

from __future__ import annotations

import os
from typing import Any

ROLE_VARIABLE = "CIOPROC_ROLE"

__all__ = ["ROLE_VARIABLE", "app"]

_app: Any = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            from cioproc.app.factory import create_app

            _app = create_app(role=(os.environ.get(ROLE_VARIABLE) or "all").strip().lower())
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
