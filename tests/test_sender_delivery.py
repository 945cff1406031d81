"""The Deliverer against small scripted aiohttp Track API servers: retries, 207, 400 narrowing,
auth pause, transport failures, per-user order under concurrency, the rate ceiling, secrecy."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import random
import time
from collections import defaultdict

import orjson
import pytest
from aiohttp import web
from helpers_sender import DROP, KEY, SITE, ULID_BASE, FakeTrack, Seen, config, identify_cmd, track_cmd

from cioproc.models.commands import Command, CommandKind
from cioproc.sender import Deliverer, Outcome, SenderConfig, SenderConfigError
from cioproc.sender.client import TrackClient


def delivered(outcomes: list[Outcome]) -> list[int]:
    return [i for i, o in enumerate(outcomes) if o.status == "delivered"]


async def test_v2_batches_arrive_complete_in_order_with_basic_auth(track):
    commands = [track_cmd(i % 5, i) for i in range(60)] + [identify_cmd(1, 60, plan=None)]
    async with Deliverer(config(track)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert outcomes == [Outcome("delivered", 200)] * len(commands)
    assert len(track.seen) == 1 and track.seen[0].authorized
    assert (track.seen[0].method, track.seen[0].path) == ("POST", "/api/v2/batch")
    assert [e.get("id") for e in track.seen[0].entries][:60] == [c.event_id for c in commands[:60]]
    assert track.seen[0].entries[-1]["attributes"] == {"seq": 60, "plan": None}
    stats = deliverer.stats
    assert (stats.delivered, stats.dead_lettered, stats.retries, stats.requests["200"]) == (61, 0, 0, 1)
    assert stats.bytes_sent == len(orjson.dumps(track.seen[0].body)) and len(stats.drain_latencies()) == 1
    assert not stats.latencies


async def test_empty_input_sends_nothing(track):
    async with Deliverer(config(track)) as deliverer:
        assert await deliverer.deliver([]) == []
    assert track.seen == []


async def test_retry_after_is_honoured(track):
    async def script(seen: Seen, n: int):
        if n == 1:
            return web.json_response({}, status=429, headers={"Retry-After": "1"})
        return None

    track.script = script
    async with Deliverer(config(track)) as deliverer:
        outcomes = await deliverer.deliver([track_cmd(1, 1), track_cmd(2, 2)])
    assert outcomes == [Outcome("delivered", 200)] * 2
    assert len(track.seen) == 2 and track.seen[1].body == track.seen[0].body
    assert track.seen[1].at - track.seen[0].at >= 0.95
    assert deliverer.stats.retries == 1 and deliverer.stats.requests["429"] == 1


async def test_retry_after_http_date_and_backoff_use_the_injected_sleep(track):
    answers = iter(
        [
            web.json_response(
                {}, status=503, headers={"Retry-After": email.utils.formatdate(time.time() + 40, usegmt=True)}
            ),
            web.json_response({}, status=500),
            web.json_response({}, status=408),
        ]
    )

    async def script(seen: Seen, n: int):
        return next(answers, None)

    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    track.script = script
    async with Deliverer(
        config(track, retry_base_delay=1.0, retry_max_delay=8.0), sleep=fake_sleep, rng=lambda: 1.0
    ) as deliverer:
        outcomes = await deliverer.deliver([identify_cmd(1, 1)])
    assert outcomes == [Outcome("delivered", 200)]
    assert len(slept) == 3
    assert 38 <= slept[0] <= 41  # the HTTP date, not the 1 s backoff
    assert slept[1:] == [2.0, 4.0]  # exponential: base * 2**attempt, full jitter at its top


async def test_dropped_connections_timeouts_and_5xx_are_retried(track):
    async def script(seen: Seen, n: int):
        if n == 1:
            return DROP
        if n == 2:
            await asyncio.sleep(1.0)  # beyond the client's total timeout
        if n == 3:
            return web.Response(status=502, text="bad gateway")
        return None

    track.script = script
    async with Deliverer(config(track, total_timeout=0.3)) as deliverer:
        outcomes = await deliverer.deliver([track_cmd(1, 1), identify_cmd(1, 2)])
    assert outcomes == [Outcome("delivered", 200)] * 2
    assert len(track.seen) == 4 and all(seen.body == track.seen[0].body for seen in track.seen)
    requests = deliverer.stats.requests
    assert requests["transport"] == 1 and requests["timeout"] == 1 and requests["502"] == 1 and requests["200"] == 1
    assert deliverer.stats.retries == 3


async def test_transport_errors_against_a_closed_port_are_retried_until_max_retries():
    server = await FakeTrack().start()
    await server.stop()  # nothing listens there any more
    async with Deliverer(config(server, max_retries=2, transport="v1")) as deliverer:
        outcomes = await deliverer.deliver([track_cmd(1, 1)])
    (outcome,) = outcomes
    assert outcome.status == "dead_letter" and outcome.reason == "retries_exhausted" and outcome.http_status is None
    assert "3 attempts" in (outcome.error or "") and "user-1" not in (outcome.error or "")
    assert deliverer.stats.requests["transport"] == 3


async def test_207_dead_letters_only_the_named_entries(track):
    async def script(seen: Seen, n: int):
        errors = [
            {"batch_index": i, "reason": "invalid", "field": "name", "message": "event name is not allowed"}
            for i, entry in enumerate(seen.entries)
            if entry.get("name") == "bad"
        ]
        return web.json_response({"errors": errors}, status=207) if errors else None

    track.script = script
    commands = [track_cmd(i % 3, i, name="bad" if i in (2, 7) else "ok") for i in range(10)]
    async with Deliverer(config(track)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert delivered(outcomes) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert all(o == Outcome("delivered", 207) for i, o in enumerate(outcomes) if i not in (2, 7))
    assert outcomes[2] == outcomes[7] == Outcome("dead_letter", 207, "name: event name is not allowed", "invalid")
    assert len(track.seen) == 1 and deliverer.stats.dead_lettered == 2 and deliverer.stats.delivered == 8


async def test_400_batches_are_split_down_to_exactly_the_bad_entries(track):
    accepted: list[int] = []

    async def script(seen: Seen, n: int):
        if any(entry["attributes"].get("poison") for entry in seen.entries):
            return web.json_response(
                {"errors": [{"reason": "invalid", "field": "attributes", "message": "poison"}]}, status=400
            )
        accepted.extend(entry["attributes"]["seq"] for entry in seen.entries)
        return None

    track.script = script
    bad = {3, 17, 18, 40}
    commands = [track_cmd(i % 7, i, poison=True) if i in bad else track_cmd(i % 7, i) for i in range(50)]
    async with Deliverer(config(track)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert {i for i, o in enumerate(outcomes) if o.status == "dead_letter"} == bad
    assert all(outcomes[i] == Outcome("dead_letter", 400, "attributes: poison", "invalid") for i in bad)
    assert sorted(accepted) == [i for i in range(50) if i not in bad]  # each good entry exactly once
    assert accepted == sorted(accepted)  # and in order
    assert len(track.seen) <= 2 * len(bad) * 6 + 1  # narrowing costs O(bad * log n) requests
    assert deliverer.stats.splits > 0


async def test_401_pauses_delivery_until_the_credentials_work(track, caplog):
    accept = asyncio.Event()

    async def script(seen: Seen, n: int):
        return None if accept.is_set() else web.Response(status=401, text="Unauthorized")

    track.script = script
    caplog.set_level(logging.DEBUG)
    commands = [track_cmd(i, i) for i in range(40)]
    async with Deliverer(config(track, max_batch_entries=5, max_concurrency=4)) as deliverer:
        task = asyncio.create_task(deliverer.deliver(commands))
        await asyncio.sleep(0.6)
        assert not task.done()
        assert deliverer.stats.auth_blocked and deliverer.stats.dead_lettered == 0
        refused = len(track.seen)
        # at most the lanes' first requests plus one probe per interval, never a hammering
        assert refused <= 4 + 0.6 / 0.1 + 1
        assert any(r.levelno == logging.ERROR and "refused the credentials" in r.getMessage() for r in caplog.records)
        accept.set()
        outcomes = await asyncio.wait_for(task, 5)
    assert outcomes == [Outcome("delivered", 200)] * 40
    assert not deliverer.stats.auth_blocked and deliverer.stats.dead_lettered == 0
    assert KEY not in caplog.text


async def test_a_users_commands_never_overtake_or_overlap_under_concurrency(track):
    rng = random.Random(7)
    track.delay = lambda: rng.uniform(0, 0.01)
    commands = [
        (identify_cmd if i % 4 == 0 else track_cmd)(rng.randrange(30), i) for i in range(400)
    ]
    async with Deliverer(config(track, max_batch_entries=4, max_concurrency=8)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert delivered(outcomes) == list(range(400))
    assert track.overlaps == []  # never two requests in flight for one person
    assert track.max_in_flight > 1  # yet requests did run concurrently
    received: dict[str, list[int]] = defaultdict(list)
    for seen in track.seen:
        for entry in seen.entries:
            received[entry["identifiers"]["id"]].append(entry["attributes"]["seq"])
    expected: dict[str, list[int]] = defaultdict(list)
    for command in commands:
        expected[command.id_value].append(command.attributes["seq"])
    assert received == expected


async def test_concurrent_deliver_calls_share_the_in_flight_cap(track):
    track.delay = lambda: 0.01
    async with Deliverer(config(track, max_batch_entries=1, max_concurrency=3)) as deliverer:
        parts = [[track_cmd(p * 100 + u, u) for u in range(10)] for p in range(4)]
        results = await asyncio.gather(*(deliverer.deliver(part) for part in parts))
    assert all(outcome.delivered for outcomes in results for outcome in outcomes)
    assert track.max_in_flight <= 3 and len(track.seen) == 40


async def test_rate_ceiling_holds_across_lanes(track):
    rate = 40.0
    async with Deliverer(
        config(track, transport="v1", max_requests_per_second=rate, rate_burst=1, max_concurrency=8)
    ) as deliverer:
        started = time.monotonic()
        outcomes = await deliverer.deliver([track_cmd(i, i) for i in range(30)])
        elapsed = time.monotonic() - started
    assert all(o.delivered for o in outcomes) and len(track.seen) == 30
    assert elapsed >= (30 - 1) / rate * 0.95
    times = [seen.at for seen in track.seen]
    window = 0.25
    for t in times:
        assert sum(1 for u in times if t <= u < t + window) <= 1 + rate * window + 1


async def test_v1_mode_sends_one_documented_request_per_command(track):
    commands = [
        Command(CommandKind.IDENTIFY, "mp-1", "email", "Ada+x@Example.com", 1_700_000_000, {"plan": None}),
        Command(
            CommandKind.SCREEN, "mp-1", "email", "Ada+x@Example.com", 1_700_000_001, {}, "Home", ULID_BASE + "0001"
        ),
        Command(CommandKind.UNSUBSCRIBE, "mp-1", "email", "Ada+x@Example.com", 1_700_000_002),
        Command(CommandKind.MERGE, "mp-2", "id", "u-2", 1_700_000_003, secondary=("email", "old@example.com")),
    ]
    async with Deliverer(config(track, transport="v1")) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert outcomes == [Outcome("delivered", 200)] * 4
    path = "/api/v1/customers/Ada%2Bx%40Example.com"
    person = [(s.method, s.path, s.body) for s in track.seen if s.path.startswith(path)]
    assert person == [
        ("PUT", path, {"plan": "", "_timestamp": 1_700_000_000}),
        (
            "POST",
            path + "/events",
            {"name": "Home", "type": "screen", "id": ULID_BASE + "0001", "timestamp": 1_700_000_001, "data": {}},
        ),
        ("PUT", path, {"unsubscribed": True, "_timestamp": 1_700_000_002}),
    ]
    merges = [(s.method, s.body) for s in track.seen if s.path == "/api/v1/merge_customers"]
    assert merges == [("POST", {"primary": {"id": "u-2"}, "secondary": {"email": "old@example.com"}})]
    assert all(s.authorized for s in track.seen)


async def test_unsendable_commands_are_dead_lettered_without_a_request(track):
    commands = [
        track_cmd(1, 1),
        track_cmd(1, 2, blob="x" * 40_000),  # over the 32 KB entry limit
        Command(CommandKind.TRACK, "mp-1", "id", "user-1", 1, {}, None, None),  # no event name
        identify_cmd(1, 4, raw=b"\x00"),  # not JSON-encodable
        track_cmd(1, 5),
    ]
    async with Deliverer(config(track)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert [o.status for o in outcomes] == ["delivered", "dead_letter", "dead_letter", "dead_letter", "delivered"]
    assert [o.reason for o in outcomes[1:4]] == ["entry_too_large", "missing_name", "unencodable"]
    assert all(o.http_status is None for o in outcomes[1:4])
    assert [e["attributes"]["seq"] for e in track.seen[0].entries] == [1, 5]


async def test_requests_stay_under_the_batch_limit_and_merges_go_alone(track):
    commands = [track_cmd(i % 4, i, pad="p" * 20_000) for i in range(60)]
    commands.insert(30, Command(CommandKind.MERGE, "mp-1", "id", "user-1", 1, secondary=("id", "user-x")))
    async with Deliverer(config(track, max_concurrency=1)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert all(o.delivered for o in outcomes)
    sizes = [len(orjson.dumps(seen.body)) for seen in track.seen]
    assert max(sizes) <= 495_000 and len(track.seen) >= 4
    merges = [seen for seen in track.seen if any(e["action"] == "merge" for e in seen.entries)]
    assert len(merges) == 1 and len(merges[0].entries) == 1
    order = [e.get("attributes", {}).get("seq", "merge") for seen in track.seen for e in seen.entries]
    assert order == [c.attributes.get("seq", "merge") for c in commands]


async def test_the_api_key_never_leaks(track, caplog):
    token = base64.b64encode(f"{SITE}:{KEY}".encode()).decode()

    async def script(seen: Seen, n: int):
        echo = f"bad key {KEY} in Basic {token}"
        if n == 1:
            return web.Response(status=401, text=echo)
        if n == 2:
            return web.Response(status=503, text=echo)
        return web.json_response(
            {"errors": [{"batch_index": 0, "reason": "invalid", "field": "x", "message": echo}]}, status=207
        )

    track.script = script
    caplog.set_level(logging.DEBUG)
    async with Deliverer(config(track, auth_retry_interval=0.01)) as deliverer:
        outcomes = await deliverer.deliver([track_cmd(1, 1)])
        texts = [repr(deliverer), str(deliverer.config), repr(deliverer.stats), repr(deliverer.client), repr(outcomes)]
    assert outcomes[0].status == "dead_letter" and "***" in (outcomes[0].error or "")
    for text in [caplog.text, *texts]:
        assert KEY not in text and token not in text
    for bad in (dict(site_id=""), dict(api_key=""), dict(region="mars", track_url=None)):
        with pytest.raises(SenderConfigError) as raised:
            config(track, **bad)
        assert KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "base_url"),
    [
        (dict(region="us"), "https://track.customer.io"),
        (dict(region="EU"), "https://track-eu.customer.io"),
        (dict(track_url="http://127.0.0.1:8080/"), "http://127.0.0.1:8080"),
        (dict(track_url="https://proxy.example/cio"), "https://proxy.example/cio"),
    ],
)
def test_base_url(overrides, base_url):
    assert SenderConfig(site_id=SITE, api_key=KEY, **overrides).base_url == base_url


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(site_id=""), "CIO_SITE_ID and CIO_API_KEY"),
        (dict(api_key=""), "API key not set"),
        (dict(track_url="http://track.customer.io"), "refusing plain http"),
        (dict(track_url="ftp://x"), "http(s) URL"),
        (dict(track_url="http://user:pw@host"), "must not carry credentials"),
        (dict(region="mars"), "unknown region"),
        (dict(transport="v3"), "transport"),
        (dict(max_batch_bytes=600_000), "max_batch_bytes"),
        (dict(max_entry_bytes=40_000), "max_entry_bytes"),
        (dict(max_requests_per_second=0), "max_requests_per_second"),
        (dict(max_concurrency=0), "max_concurrency"),
        (dict(total_timeout=0), "total_timeout"),
    ],
)
def test_bad_configuration_is_refused_clearly(overrides, message):
    with pytest.raises(SenderConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SenderConfig(**{"site_id": SITE, "api_key": KEY, **overrides})


def test_deliverer_needs_a_sender_config():
    with pytest.raises(SenderConfigError):
        Deliverer({"site_id": SITE, "api_key": KEY})  # type: ignore[arg-type]


def test_from_config_and_masked_repr():
    from cioproc.config import parse_config

    config = parse_config(
        {
            "CIO_SITE_ID": SITE,
            "CIO_API_KEY": KEY,
            "CIO_REGION": "eu",
            "CIO_TRANSPORT": "V1",
            "CIO_MAX_REQUESTS_PER_SECOND": "250",
            "CIO_MAX_CONCURRENCY": "3",
        }
    )
    cfg = SenderConfig.from_config(config)
    assert (cfg.base_url, cfg.transport, cfg.max_requests_per_second, cfg.max_concurrency) == (
        "https://track-eu.customer.io", "v1", 250.0, 3
    )
    assert cfg.api_key == KEY
    assert KEY not in repr(cfg) and KEY not in str(cfg) and "api_key=***" in repr(cfg)
    with pytest.raises(SenderConfigError, match="CIO_SITE_ID and CIO_API_KEY"):
        SenderConfig.from_config(parse_config({"CIO_SITE_ID": SITE}))


def test_client_repr_and_redaction_hide_the_key():
    client = TrackClient("https://track.customer.io", SITE, KEY)
    token = base64.b64encode(f"{SITE}:{KEY}".encode()).decode()
    assert KEY not in repr(client)
    assert client.redact(f"x {KEY} y Basic {token}") == "x *** y Basic ***"
