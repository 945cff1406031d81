"""Each setting declared once (issue 14 item 7): the SETTINGS table drives parsing, the
dataclass defaults, `cioproc config`, VARIABLES (the README and compose checks) and the help."""

from __future__ import annotations

import re
from pathlib import Path

from cioproc.cli import build_parser
from cioproc.config import SETTINGS, VARIABLES, Config, parse_config

PACKAGE = Path(__file__).resolve().parents[1] / "cioproc"
# Modules that write an environment for a child process (the demo's worker, the secure broker's
# client settings, the sandbox's credentials printout) name variables to set them, not to read them.
WRITES_CHILD_ENVIRONMENTS = {"demo.py", "kafka/secure.py", "sandbox/cli.py"}


def test_variables_defaults_and_masking_come_from_the_table():
    assert VARIABLES == {setting.variable: setting.default for setting in SETTINGS}
    assert list(VARIABLES) == [setting.variable for setting in SETTINGS]
    assert Config() == parse_config({})  # the dataclasses' defaults are the table's, parsed
    assert Config().app_id == VARIABLES["CIOPROC_APP_ID"]
    secrets = {setting.variable: f"s3cret-{n}" for n, setting in enumerate(SETTINGS) if setting.secret}
    assert set(secrets) == {"CIO_API_KEY", "KAFKA_SASL_PASSWORD"}
    masked = parse_config(secrets).masked()
    assert list(masked) == [setting.variable for setting in SETTINGS if setting.fields]
    for variable, value in secrets.items():
        assert masked[variable] == "****" and value not in str(masked)
    assert all(setting.help and "\n" not in setting.help for setting in SETTINGS)


def test_a_variable_is_named_in_the_package_only_by_its_setting():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        for setting in SETTINGS:
            count = len(re.findall(rf"[\"']{setting.variable}[\"']", text))
            if relative == "config_table.py":  # the settings table of cioproc.config
                assert count == 1, f"{setting.variable} is named {count} times in config_table.py (the table only)"
            elif relative not in WRITES_CHILD_ENVIRONMENTS:
                assert count == 0, f"{relative} names {setting.variable}: read it from cioproc.config"


def test_cioproc_config_help_lists_every_variable_with_its_help():
    parser = build_parser()
    sub = next(action for action in parser._actions if action.dest == "command")
    text = sub.choices["config"].format_help()
    for setting in SETTINGS:
        assert setting.variable in text and setting.help in text
