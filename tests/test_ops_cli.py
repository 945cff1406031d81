"""Issue 16, command-line polish: python -m cioproc, one version, completion scripts, help with
examples, .env read as docker compose reads it, the LICENSE, the User-Agent."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import tomllib

import pytest
from aiohttp import web
from ops_helpers import REPO, run_cli

from cioproc import __version__
from cioproc.cli import EXAMPLES, build_parser
from cioproc.config import ConfigError, load_config, read_env_file


def test_python_dash_m_cioproc_and_one_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"cioproc {__version__}"
    assert importlib.metadata.version("cioproc") == __version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]


def test_every_subcommand_has_a_one_line_help_and_examples():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)
    assert names == set(EXAMPLES)
    for action in sub._choices_actions:
        assert action.help and "\n" not in action.help, action.dest
    for name in ("check", "status", "inspect", "replay", "sandbox"):
        result = run_cli(name, "--help")
        assert result.returncode == 0, result.stderr
        assert "examples:" in result.stdout and f"cioproc {name}" in result.stdout.split("examples:")[1], name


def test_completion_scripts_name_every_command_and_option():
    bash = run_cli("completion", "bash")
    assert bash.returncode == 0
    for word in ("check", "status", "inspect", "--role", "--from-time", "processor", "replay", "--source"):
        assert word in bash.stdout, word
    assert subprocess.run(["bash", "-n"], input=bash.stdout, text=True).returncode == 0
    completed = subprocess.run(
        ["bash", "-c", 'eval "$0"; COMP_WORDS=(cioproc inspect --fr); COMP_CWORD=2; _cioproc; echo "${COMPREPLY[@]}"',
         bash.stdout], capture_output=True, text=True)
    assert completed.stdout.split() == ["--from-time"], completed
    zsh = run_cli("completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef cioproc") and "--partition" in zsh.stdout
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n"], input=zsh.stdout, text=True).returncode == 0


def test_env_file_is_read_as_docker_compose_reads_it(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "# the workspace\n"
        "export CIO_SITE_ID=site-1\n"
        "CIO_REGION=eu   # EU workspace\n"
        "CIO_API_KEY=\"key # with hash\"\n"
        "CIOPROC_APP_ID='my-app'\n"
    )
    assert read_env_file(env) == {"CIO_SITE_ID": "site-1", "CIO_REGION": "eu", "CIO_API_KEY": "key # with hash",
                                  "CIOPROC_APP_ID": "my-app"}
    config = load_config({"CIOPROC_ENV_FILE": str(env), "CIO_SITE_ID": "from-environment"})
    assert (config.site_id, config.region, config.app_id) == ("from-environment", "eu", "my-app")
    assert config.api_key.reveal() == "key # with hash"


@pytest.mark.parametrize("line", ["=value", "JUST_A_NAME", "BAD KEY=1"])
def test_a_bad_env_line_is_one_error_naming_file_and_line(tmp_path, line):
    env = tmp_path / ".env"
    env.write_text(f"CIO_SITE_ID=x\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        read_env_file(env)
    assert caught.value.problems == [f"{env}:2: expected KEY=VALUE"]


def test_license_file_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    text = (REPO / "LICENSE").read_text()
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


async def test_the_user_agent_carries_the_version():
    from cioproc.sender.client import TrackClient

    seen = []

    async def region(request: web.Request) -> web.Response:
        seen.append(request.headers.get("User-Agent"))
        return web.json_response({"url": "x", "region": "us", "environment_id": 1})

    app = web.Application()
    app.router.add_get("/api/v1/accounts/region", region)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with TrackClient(f"http://127.0.0.1:{port}", "s", "k") as client:
            await client.request("GET", "/api/v1/accounts/region", b"")
    finally:
        await runner.cleanup()
    assert seen == [f"cioproc/{__version__}"]


def test_the_first_jar_download_shows_how_many_files_came(tmp_path, monkeypatch, capsys):
    from cioproc.kafka.broker import KAFKA_VERSION, LocalBroker

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_mvn = bin_dir / "mvn"  # Maven's batch-mode output for three files, and the jar it copies
    fake_mvn.write_text(
        "#!/bin/sh\n"
        "for f in a b c; do echo \"[INFO] Downloaded from central: https://repo/x/$f.jar (1 kB at 2 kB/s)\"; done\n"
        "for arg in \"$@\"; do case $arg in -DoutputDirectory=*) d=${arg#-DoutputDirectory=};; esac; done\n"
        f"mkdir -p \"$d\" && touch \"$d/kafka_2.13-{KAFKA_VERSION}.jar\"\n"
    )
    fake_mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    broker = LocalBroker(home=tmp_path / "home", port=1)
    assert broker.fetch_jars(progress=lambda _line: None) == broker.jars
    assert capsys.readouterr().err.strip() == "kafka: downloaded 3 files from Maven Central"
    assert (broker.jars / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()
