"""The fence around faust-streaming's internals (cioproc/app/internals.py).

- the worker refuses a faust-streaming outside the tested range, in one line;
- every upstream function the project copies, overrides or relies on still has the source
  recorded for the pinned version (a changed one names itself and the project's copy);
- every method a cioproc class overrides on a faust, mode, aiokafka or aiohttp class is
  watched (by digest) or declared a public extension hook;
- the project's copy of ``Consumer._drain_messages`` keeps upstream's periodic yield to the
  event loop and its log of records dropped after a seek back.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from faust.types import TP, Message

import cioproc
from cioproc.app import internals
from cioproc.app.batching import BatchApp

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("version", ["0.15.3", "0.15.9"])
def test_tested_faust_versions_are_accepted(version):
    internals.check_faust_version(version)


@pytest.mark.parametrize("version", ["0.15.2", "0.14.0", "0.16.0", "0.16.0rc1", "1.0.0", "garbage"])
def test_other_faust_versions_are_refused_in_one_line(version):
    with pytest.raises(internals.StartupError) as refused:
        internals.check_faust_version(version)
    message = str(refused.value)
    assert "\n" not in message
    assert f"faust-streaming {version}" in message and ">=0.15.3,<0.16" in message


def test_worker_refuses_an_untested_faust_before_kafka():
    code = (
        "import sys, faust; faust.__version__ = '0.16.1'\n"
        "from cioproc.cli import main\n"
        "sys.exit(main(['worker', '--role', 'processor']))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CIO_", "CIOPROC_", "KAFKA_"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**base, "CIOPROC_ENV_FILE": "/nonexistent", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "faust-streaming 0.16.1" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_upstream_functions_the_project_copies_are_unchanged():
    changes = internals.upstream_changes()
    assert not changes, "\n".join(changes)


def test_a_changed_upstream_function_is_named_with_the_projects_copy(monkeypatch):
    name = "faust.transport.consumer:Consumer._drain_messages"
    watched = internals.UPSTREAM[name]
    monkeypatch.setitem(internals.UPSTREAM, name, watched._replace(digest="0" * 16))
    changes = internals.upstream_changes()
    assert len(changes) == 1
    assert name in changes[0] and watched.ours in changes[0] and "BatchConsumer._drain_messages" in changes[0]


def test_every_watched_upstream_function_exists_and_names_its_project_side():
    for name, watched in internals.UPSTREAM.items():
        assert internals.upstream_source(name), name
        assert watched.ours.startswith("cioproc/") and watched.why, name


def _messages(topic: str, offsets: range) -> list[Message]:
    return [Message(topic, 0, o, 0.0, 0, None, b"k", b"v", None) for o in offsets]


async def _drain_one_fetch(app: BatchApp, fetched: list[Message]) -> tuple[list[list[Message]], int]:
    """Run the consumer's drain loop over one fetch; (chunks handed over, loop turns until then)."""
    consumer = app.consumer
    chunks: list[list[Message]] = []
    turns = 0
    turns_at_handler = 0

    async def handler(records: list[Message]) -> None:
        nonlocal turns_at_handler
        turns_at_handler = turns
        chunks.append(records)
        await consumer.stop()  # ends the drain loop after this fetch

    app.batch_routes["in"] = handler

    async def getmany(timeout: float):  # noqa: ASYNC109 - the consumer's signature
        for message in fetched:
            yield TP(message.topic, message.partition), message

    consumer.getmany = getmany

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    try:
        await asyncio.wait_for(consumer._drain_messages(app.consumer), timeout=10)
    finally:
        counter.cancel()
    return chunks, turns_at_handler


async def test_drain_loop_yields_to_the_event_loop_within_a_large_fetch():
    app = BatchApp("drain-test", broker="kafka://127.0.0.1:1")
    chunks, turns = await _drain_one_fetch(app, _messages("in", range(1000)))
    assert [len(c) for c in chunks] == [1000]
    # upstream yields every 100 records; without it the loop turns once or twice per fetch
    assert turns >= 9, f"the drain loop held the event loop for a whole fetch ({turns} turns)"


async def test_records_before_the_read_offset_are_dropped_with_a_log(caplog):
    app = BatchApp("drain-test", broker="kafka://127.0.0.1:1")
    app.consumer._read_offset[TP("in", 0)] = 5  # a seek back: offsets 3 and 4 come again later
    caplog.set_level(1)
    chunks, _ = await _drain_one_fetch(app, _messages("in", range(3, 8)))
    assert [m.offset for m in chunks[0]] == [5, 6, 7]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage().lower()]
    assert len(dropped) == 2 and "in-0 offset 3" in dropped[0] and "in-0 offset 4" in dropped[1], dropped
    assert not any("b'v'" in line or "b'k'" in line for line in dropped), "a record's key or value was logged"


UPSTREAM_PACKAGES = ("faust", "mode", "aiokafka", "aiohttp")


def upstream_overrides() -> dict[str, str]:
    """Each function a cioproc class defines over an upstream class's: upstream name -> ours."""
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(cioproc.__path__, "cioproc."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            upstream = [base for base in cls.__mro__[1:] if base.__module__.split(".")[0] in UPSTREAM_PACKAGES]
            for name, value in vars(cls).items():
                if not callable(value) and not isinstance(value, (staticmethod, classmethod, property)):
                    continue
                if name.startswith("__") and name not in ("__init__", "__post_init__"):
                    continue
                defining = next((base for base in upstream if name in vars(base)), None)
                if defining is not None:
                    upstream_name = f"{defining.__module__}:{defining.__qualname__}.{name}"
                    found[upstream_name] = f"{cls.__module__}.{cls.__qualname__}"
    return found


def test_every_override_of_an_upstream_method_is_watched_or_a_public_hook():
    overrides = upstream_overrides()
    assert "faust.transport.consumer:Consumer._drain_messages" in overrides  # the scan finds what it must
    unwatched = {
        name: ours for name, ours in overrides.items()
        if name not in internals.UPSTREAM and name.rsplit(".", 1)[0] not in internals.UPSTREAM
        and name not in internals.PUBLIC_HOOKS
    }
    assert not unwatched, (
        "cioproc overrides these upstream methods without watching them: add each to UPSTREAM in "
        f"cioproc/app/internals.py (digest: python -m cioproc.app.internals), or to PUBLIC_HOOKS if it is "
        f"a documented extension point: {unwatched}"
    )


def test_public_hooks_are_overridden_and_not_also_watched():
    overrides = upstream_overrides()
    assert set(internals.PUBLIC_HOOKS) <= set(overrides), set(internals.PUBLIC_HOOKS) - set(overrides)
    assert not set(internals.PUBLIC_HOOKS) & set(internals.UPSTREAM)
