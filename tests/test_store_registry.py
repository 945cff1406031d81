"""How Faust finds cioproc's table stores: the ``faust.stores`` entry points of the installed
package, not writes into Faust's registry when a cioproc module is imported; a worker without
them stops with one line; no code branches on the store's class."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The URL schemes deployments use (CIOPROC_STORE memory / rocksdb) and the classes behind them.
STORES = {"cioproc-memory": "cioproc.store.memory:MemoryStore", "cioproc-rocksdb": "cioproc.store.rocksdb:RocksDBStore"}


def python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=120)


def test_pyproject_registers_both_stores_as_faust_store_entry_points():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["faust.stores"] == STORES


def test_faust_resolves_the_store_urls_without_cioproc_being_imported_first(tmp_path):
    result = python(
        """
        import json, sys
        import faust.stores
        imported_before = sorted(name for name in sys.modules if name.split(".")[0] == "cioproc")
        found = {}
        for scheme in ("cioproc-memory", "cioproc-rocksdb"):
            by_url, by_name = faust.stores.by_url(scheme + "://"), faust.stores.by_name(scheme)
            assert by_url is by_name
            found[scheme] = f"{by_url.__module__}:{by_url.__qualname__}"
        print(json.dumps([imported_before, found]))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    imported_before, found = json.loads(result.stdout)
    assert imported_before == [] and found == STORES


def test_importing_cioproc_leaves_fausts_store_registry_alone(tmp_path):
    result = python(
        """
        import importlib, json, pkgutil
        from faust.stores import STORES
        import cioproc
        before = dict(STORES.aliases)
        modules = [m.name for m in pkgutil.walk_packages(cioproc.__path__, "cioproc.")
                   if not m.name.endswith("__main__")]
        for name in modules:
            importlib.import_module(name)
        print(json.dumps([len(modules), dict(STORES.aliases) == before, STORES._finalized]))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    count, unchanged, finalized = json.loads(result.stdout)
    assert count > 40 and unchanged and not finalized


# Run from a source tree (PYTHONPATH) rather than installed: no cioproc entry points in the metadata.
WITHOUT_ENTRY_POINTS = '''
import importlib.metadata as metadata

_entry_points = metadata.entry_points


def kept(found):
    return [ep for ep in found if not (ep.group == "faust.stores" and ep.name.startswith("cioproc"))]


def entry_points(**selection):
    found = _entry_points(**selection)
    if selection:
        return metadata.EntryPoints(kept(found))
    return metadata.SelectableGroups.load(kept(ep for group in found.values() for ep in group))  # Python 3.11


metadata.entry_points = entry_points
'''


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_worker_without_the_entry_points_stops_with_one_line_saying_what_to_do(store, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WITHOUT_ENTRY_POINTS)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "CIOPROC_ENV_FILE": str(tmp_path / "no.env"),
           "CIOPROC_HOME": str(tmp_path), "CIOPROC_TOPICS_FILE": str(REPO / "topics.yaml"),
           "CIOPROC_STORE": store, "CIOPROC_DATA_DIR": str(tmp_path / "data"),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-m", "cioproc.cli", "worker", "--role", "processor"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert f"cioproc-{store}" in lines[0] and "faust.stores" in lines[0] and "make install" in lines[0], output


def store_class_checks(source: str) -> list[str]:
    """isinstance/issubclass calls whose class argument names a store class (``...Store``, or a
    name imported from faust.stores or cioproc.store)."""
    tree = ast.parse(source)
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith(("faust.stores", "cioproc.store")) for alias in node.names}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("isinstance", "issubclass") and len(node.args) == 2):
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if any(name.endswith(("Store", "StoreT")) or name in imported for name in names):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_a_branch_on_a_store_class():
    assert store_class_checks("from faust.stores.memory import Store\nif isinstance(s, Store): pass\n")
    assert store_class_checks("if isinstance(s, (int, RocksDBStore)): pass\n")
    assert not store_class_checks("if isinstance(s, dict): pass\n")


def test_no_cioproc_module_branches_on_a_store_class():
    found = {str(path.relative_to(REPO)): checks for path in sorted((REPO / "cioproc").rglob("*.py"))
             if (checks := store_class_checks(path.read_text()))}
    assert found == {}


@pytest.mark.parametrize("entry_points", [False, True])
def test_check_reports_a_missing_store_entry_point_for_the_processor_role(entry_points, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    if not entry_points:
        (site / "sitecustomize.py").write_text(WITHOUT_ENTRY_POINTS)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "CIOPROC_ENV_FILE": str(tmp_path / "no.env"),
           "CIOPROC_HOME": str(tmp_path), "CIOPROC_TOPICS_FILE": str(REPO / "topics.yaml"),
           "CIOPROC_STORE": "rocksdb", "CIOPROC_DATA_DIR": str(tmp_path / "data"),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-m", "cioproc.cli", "check", "--role", "processor"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output  # Kafka at :1 is a problem either way
    store_problems = [line for line in result.stderr.splitlines() if "cioproc-rocksdb" in line]
    if entry_points:
        assert not store_problems, output
        assert "ok       table store: cioproc-rocksdb" in result.stdout, output
    else:
        assert len(store_problems) == 1 and store_problems[0].startswith("problem  table store: "), output
        assert "make install" in store_problems[0], output
