"""Issue 14 item 8: header names and consumer groups are declared once, in cioproc.names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cioproc import names
from cioproc.app.factory import group_id as factory_group_id
from cioproc.replay import consumer_group

PACKAGE = Path(__file__).resolve().parents[1] / "cioproc"
HEADERS = [value for key, value in vars(names).items() if key.isupper() and value.startswith("cioproc.")]


def test_every_header_name_is_written_out_only_in_the_names_module():
    assert len(HEADERS) == 12
    literal = re.compile("|".join(re.escape(f'"{header}"') for header in HEADERS))
    found = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "names.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert found == [], f"header names written out again (import them from cioproc.names): {found}"


@pytest.mark.parametrize("role,expected", [
    ("processor", "app"), ("all", "app"), ("sender", "app-sender"), ("dlq-redrive", "app-dlq-redrive"),
])
def test_one_consumer_group_per_role_wherever_it_is_asked(role, expected):
    assert names.group_id(role, "app") == consumer_group(role, "app") == expected
    if role != "dlq-redrive":
        assert factory_group_id(role, "app") == expected


def test_an_unknown_role_has_no_group():
    with pytest.raises(ValueError):
        names.group_id("auditor", "app")
