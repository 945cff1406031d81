"""The pure decisions of `cioproc replay`: times, offsets, start points, groups, re-drive targets."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cioproc.replay import (
    ReplayError,
    build_parser,
    choose_commands_group,
    consumer_group,
    forward_moves,
    parse_offsets,
    parse_time,
    redrive_target,
    start_offsets,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1795719592000", 1795719592000),
        ("0", 0),
        ("2026-11-28T10:00:00Z", 1795860000000),
        ("2026-11-28T10:00:00+00:00", 1795860000000),
        ("2026-11-28T11:00:00+01:00", 1795860000000),
        ("2026-11-28T10:00:00", 1795860000000),  # no zone: UTC
        ("2026-11-28T10:00:00.250Z", 1795860000250),
        ("2026-11-28", 1795824000000),
    ],
)
def test_times_are_iso_or_unix_milliseconds(text, ms):
    assert parse_time(text) == ms


@pytest.mark.parametrize("text", ["", "yesterday", "-5", "2026-13-01", "12:00", "1.5e12"])
def test_other_times_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "offsets"),
    [("0:120", {0: 120}), ("0:120,1:98", {0: 120, 1: 98}), (" 3:0 , 7:5", {3: 0, 7: 5})],
)
def test_offsets_are_partition_colon_offset(text, offsets):
    assert parse_offsets(text) == offsets


@pytest.mark.parametrize("text", ["", "0", "0:", ":5", "a:1", "0:-1", "0:1;1:2", "0:1,0:2"])
def test_other_offsets_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_offsets(text)


BEGIN = {0: 10, 1: 0, 2: 5}
END = {0: 100, 1: 50, 2: 5}


def test_from_beginning_is_each_partitions_first_retained_offset():
    assert start_offsets(BEGIN, END, from_beginning=True) == BEGIN


def test_from_time_is_the_first_offset_at_or_after_it_else_the_end():
    assert start_offsets(BEGIN, END, by_time={0: 40, 1: None, 2: None}) == {0: 40, 1: 50, 2: 5}


def test_from_offsets_moves_only_the_named_partitions_clamped_to_what_is_retained():
    assert start_offsets(BEGIN, END, from_offsets={0: 3, 1: 20}) == {0: 10, 1: 20}
    assert start_offsets(BEGIN, END, from_offsets={1: 999}) == {1: 50}


def test_from_offsets_of_an_unknown_partition_is_refused():
    with pytest.raises(ReplayError, match="no partition 9"):
        start_offsets(BEGIN, END, from_offsets={0: 1, 9: 1})


@given(
    st.dictionaries(st.integers(0, 15), st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1).flatmap(
        lambda parts: st.tuples(
            st.just({p: min(a, b) for p, (a, b) in parts.items()}),
            st.just({p: max(a, b) for p, (a, b) in parts.items()}),
            st.dictionaries(st.sampled_from(sorted(parts)), st.integers(0, 2 * 10**6)),
        )
    )
)
def test_a_start_point_is_always_inside_the_retained_range(case):
    beginning, end, wanted = case
    for result in (
        start_offsets(beginning, end, from_offsets=wanted),
        start_offsets(beginning, end, from_beginning=True),
        start_offsets(beginning, end, by_time={p: min(max(o, beginning.get(p, 0)), end.get(p, 0))
                                              for p, o in wanted.items()}),
    ):
        assert set(result) <= set(end)
        assert all(beginning[p] <= offset <= end[p] for p, offset in result.items())


@pytest.mark.parametrize(
    ("before", "targets", "forward"),
    [
        ({0: 1000}, {0: 1200}, {0: (1000, 1200)}),  # a lagging group: 200 records never processed
        ({0: 1000}, {0: 1000}, {}),
        ({0: 1000}, {0: 800}, {}),
        ({0: None}, {0: 40}, {0: (10, 40)}),  # no commit: the workers start at the beginning (earliest)
        ({0: None}, {0: 10}, {}),
        ({0: 3}, {0: 10}, {}),  # committed before what is retained: the workers start at the beginning anyway
        ({0: 60, 1: 20, 2: 5}, {0: 90, 1: 20, 2: 5}, {0: (60, 90)}),
        ({}, {1: 30}, {1: (0, 30)}),  # a partition the group never committed on
    ],
)
def test_forward_moves_are_targets_past_where_the_group_would_resume(before, targets, forward):
    assert forward_moves(before, BEGIN, targets) == forward


@given(st.dictionaries(st.sampled_from([0, 1, 2]), st.one_of(st.none(), st.integers(0, 200))),
       st.dictionaries(st.sampled_from([0, 1, 2]), st.integers(0, 200)))
def test_only_forward_moves_skip_records(before, targets):
    forward = forward_moves(before, BEGIN, targets)
    for p, target in targets.items():
        resume = max(before.get(p) or 0, BEGIN[p])
        assert (p in forward) == (target > resume)


def test_offsets_change_only_with_execute():
    parser = build_parser()
    plan = parser.parse_args(["batches", "--from-beginning"])
    assert not plan.execute and not plan.allow_forward
    assert parser.parse_args(["batches", "--from-beginning", "--dry-run"]).execute is False
    assert parser.parse_args(["commands", "--from-time", "0", "--execute", "--allow-forward"]).allow_forward
    with pytest.raises(SystemExit):
        parser.parse_args(["batches", "--from-beginning", "--dry-run", "--execute"])


def test_groups_follow_the_worker_roles():
    assert consumer_group("processor", "cioproc") == "cioproc"
    assert consumer_group("all", "cioproc") == "cioproc"
    assert consumer_group("sender", "cioproc") == "cioproc-sender"
    assert consumer_group("dlq-redrive", "shop") == "shop-dlq-redrive"
    with pytest.raises(ValueError):
        consumer_group("auditor", "cioproc")


@pytest.mark.parametrize(
    ("has", "group"),
    [
        ({"app-sender": True, "app": False}, "app-sender"),  # separate sender workers
        ({"app-sender": False, "app": True}, "app"),  # role all
        ({"app-sender": False, "app": False}, "app"),  # nothing delivered yet
        ({}, "app"),
    ],
)
def test_commands_replay_moves_the_group_that_has_been_delivering(has, group):
    assert choose_commands_group("app", has) == group


def test_commands_replay_refuses_to_guess_when_both_groups_delivered():
    with pytest.raises(ReplayError, match="--group"):
        choose_commands_group("app", {"app-sender": True, "app": True})


INPUTS = ("mparticle.batches", "mparticle.audiences")


@pytest.mark.parametrize(
    ("headers", "target"),
    [
        ([("cioproc.reason", b"not_json"), ("cioproc.source.topic", b"mparticle.audiences")], "mparticle.audiences"),
        ([("cioproc.source.topic", b"mparticle.batches")], "mparticle.batches"),
        ([("cioproc.source.topic", b"some.other.topic")], "mparticle.batches"),  # never an arbitrary topic
        ([("cioproc.source.topic", None)], "mparticle.batches"),
        ([], "mparticle.batches"),
    ],
)
def test_a_dead_letter_goes_back_to_its_source_input_topic(headers, target):
    assert redrive_target(headers, INPUTS, "mparticle.batches") == target


def test_the_parser_requires_exactly_one_start_point():
    parser = build_parser()
    assert parser.parse_args(["batches", "--from-beginning"]).from_beginning
    assert parser.parse_args(["audiences", "--from-offsets", "0:1"]).from_offsets == {0: 1}
    assert parser.parse_args(["commands", "--from-time", "5", "--group", "g"]).group == "g"
    for argv in (["batches"], ["batches", "--from-beginning", "--from-time", "5"], ["batches", "--to-time", "5"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    dlq = parser.parse_args(["dlq", "--source", "commands", "--to-time", "2026-11-28T10:00:00Z", "--limit", "3"])
    assert (dlq.source, dlq.to_time, dlq.limit) == ("commands", 1795860000000, 3)


def test_groups_are_the_ones_the_workers_use():
    from cioproc.app.factory import group_id

    for role in ("processor", "all", "sender"):
        assert consumer_group(role, "shop") == group_id(role, "shop")


# ---- irreversible commands in a commands replay ---------------------------------------------

def _command(kind, **fields):
    from cioproc.models.commands import Command

    return Command(kind, "1", "id", "c1", 1, **fields)


def test_irreversible_kinds_are_found_in_both_record_formats_in_order():
    from cioproc.models.commands import (
        COMMAND_LIST_FORMAT,
        RECORD_FORMAT_HEADER,
        CommandKind,
        encode_command,
        encode_commands,
    )
    from cioproc.replay.plan import irreversible_kinds

    listed = [(RECORD_FORMAT_HEADER, COMMAND_LIST_FORMAT)]
    track = _command(CommandKind.TRACK, name="viewed", event_id="01J")
    merge = _command(CommandKind.MERGE, secondary=("email", "a@example.com"))
    assert irreversible_kinds(encode_commands([track, merge, track, merge]), listed) == ["merge", "merge"]
    for kind in (CommandKind.ERASE, CommandKind.DELETE, CommandKind.SUPPRESS):
        assert irreversible_kinds(encode_command(_command(kind)), []) == [kind.value]
    for kind in (CommandKind.IDENTIFY, CommandKind.TRACK, CommandKind.UNSUBSCRIBE, CommandKind.ADD_DEVICE,
                 CommandKind.DELETE_DEVICE):  # delete_device is not delete: its prefix differs
        assert irreversible_kinds(encode_commands([_command(kind)]), listed) == []
    assert irreversible_kinds(encode_command(merge), listed) == []  # a single command read as a list: unreadable


@given(st.binary(max_size=200), st.sampled_from([[], [("cioproc.format", b"commands/1")], [("cioproc.format", b"x")]]))
def test_irreversible_kinds_never_raise_on_arbitrary_records(value, headers):
    from cioproc.replay.plan import irreversible_kinds

    assert isinstance(irreversible_kinds(value, headers), list)


def test_replayed_ranges_are_what_the_group_reads_again_not_for_the_first_time():
    from cioproc.replay.plan import replayed_ranges

    before = {0: 10, 1: None, 2: 4, 3: 7}
    beginning = {0: 0, 1: 0, 2: 5, 3: 0}
    end = {0: 12, 1: 9, 2: 9, 3: 6}  # 3: a commit past the end (a recreated topic)
    targets = {0: 3, 1: 0, 2: 5, 3: 0}
    assert replayed_ranges(before, beginning, targets, end) == {0: (3, 10), 3: (0, 6)}


def test_irreversible_counts_are_described_in_one_phrase():
    from cioproc.replay.plan import describe_irreversible

    assert describe_irreversible({"erase": 2}) == "2 erase command(s)"
    assert describe_irreversible({"erase": 1, "merge": 3}) == "3 merge and 1 erase command(s)"
    assert describe_irreversible({"suppress": 1, "delete": 2, "merge": 1}) == \
        "1 merge, 2 delete and 1 suppress command(s)"


def test_only_a_commands_replay_takes_allow_irreversible():
    parser = build_parser()
    assert parser.parse_args(["commands", "--from-beginning", "--allow-irreversible"]).allow_irreversible
    with pytest.raises(SystemExit):
        parser.parse_args(["batches", "--from-beginning", "--allow-irreversible"])
