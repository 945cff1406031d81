"""The users table's local stores: Faust table stores behind one interface (:class:`UserStore`).

- :mod:`cioproc.store.interface`: what the processor and the bulk restore call;
- :mod:`cioproc.store.memory`, :mod:`cioproc.store.rocksdb`: Faust's memory and RocksDB
  stores with that interface, persisted changelog offsets and a bulk restore;
- :mod:`cioproc.store.changelog`: the bulk restore (a plain consumer reading the changelog);
- :mod:`cioproc.store.registry`: their URLs; Faust finds them through the ``faust.stores``
  entry points in pyproject.toml (so the package must be installed: ``make install``).

This package imports no store module itself: Faust imports the one a URL names.
"""

from cioproc.store.interface import ChangelogRecord, UserStore
from cioproc.store.registry import store_url

__all__ = ["ChangelogRecord", "UserStore", "store_url"]
