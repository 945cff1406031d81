"""The URLs of cioproc's table stores, and the check that Faust can find them.

Faust resolves a store URL by its scheme in ``faust.stores.STORES``, which reads the
``faust.stores`` entry points of the installed packages (pyproject.toml registers
:data:`STORE_CLASSES`). From a source tree that is not installed (PYTHONPATH) they are
missing, and Faust would stop with a traceback deep in its app setup:
:func:`store_url` says what to do instead, in one line.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from cioproc.errors import StartupError

ENTRY_POINT_GROUP = "faust.stores"
# URL scheme -> the class Faust imports for it; the schemes are in deployments' data dirs' history.
STORE_CLASSES = {
    "cioproc-memory": "cioproc.store.memory:MemoryStore",
    "cioproc-rocksdb": "cioproc.store.rocksdb:RocksDBStore",
}


def store_url(store: str, table: str) -> str:
    """The Faust store URL of ``table`` for ``CIOPROC_STORE`` (``memory`` or ``rocksdb``).

    The path is the table's name (what Faust's RocksDB store names its files by): a URL
    without one is false in Faust's eyes and would fall back to the app's store.
    StartupError (one line) when the installed package does not register the store.
    """
    scheme = f"cioproc-{'rocksdb' if store == 'rocksdb' else 'memory'}"
    registered = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if registered.get(scheme) != STORE_CLASSES[scheme]:
        raise StartupError(
            f"Faust cannot find cioproc's table store {scheme}: the package's {ENTRY_POINT_GROUP} entry points "
            f"are not installed (run from a source tree?); install it: make install, or pip install -e ."
        )
    return f"{scheme}:{table}"
