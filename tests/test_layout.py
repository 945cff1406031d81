"""Code layout (issue 14 item 9): no module of the package passes 400 lines, and no test
module imports another test module (shared fixtures and helpers live in conftest.py or
tests/helpers_*.py, so each test module is about the module it tests)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_package_module_passes_the_line_limit() -> None:
    too_long = {
        path.relative_to(ROOT).as_posix(): lines
        for path in sorted((ROOT / "cioproc").rglob("*.py"))
        if (lines := _line_count(path)) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines (split them along a real seam): {too_long}"


def _imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_test_module_imports_another_test_module() -> None:
    tests = ROOT / "tests"
    test_modules = {path.stem for path in tests.glob("test_*.py")}
    offenders = {
        path.name: sorted(imported & test_modules)
        for path in sorted(tests.glob("test_*.py"))
        if (imported := _imported_modules(ast.parse(path.read_text(encoding="utf-8")))) & test_modules
    }
    assert not offenders, f"test modules importing test modules (move what they share to a helpers module): {offenders}"
