"""Identities and merges never go backwards (issue 12, items 4, 5, 6 and 8).

- 4: each identity carries the time it was set; an input older than the state's identities
  (a replay, a lagging audience snapshot, redone work) changes no identifier, merges
  nothing and never regresses the email. Audience messages never change who a person is.
- 5: merging is opt-in (``merge_people``); off, an identifier change is identified under
  the new identifier; on, a genuinely newer change merges, at most once per pair.
- 6: an opt-out seen while the user cannot be addressed is kept and sent once it can be.
- 8: audience changes apply in their own time order; a rename clears ``In <old name>``.
"""

from __future__ import annotations

from mapping_builders import (
    T0,
    audience_message,
    batch,
    custom,
    identify_attributes,
    kinds,
    of_kind,
    opt_out,
    profile,
    reasons,
    run,
    run_all,
    run_audience,
)

from cioproc.models.settings import MappingSettings, UserIdType

DEFAULTS = MappingSettings()
MERGING = MappingSettings(merge_people=True)
PER_SEGMENT = MappingSettings(audience_attribute_per_segment=True)


def _moves(result) -> list[tuple]:
    """The identify/merge commands of a result: (kind, id type, id value, email, merged)."""
    return [(c.kind.value, c.id_type, c.id_value, c.attributes.get("email"), c.secondary)
            for c in result.commands if c.kind.value in ("identify", "merge")]


def _history(settings: MappingSettings = DEFAULTS) -> tuple[list[dict], object]:
    """email a -> customer id c1 (same email) -> c2 with email b, each a newer batch."""
    objs = [
        batch([custom("e", T0)], customer_id=None, email="a@x.io"),
        batch([custom("e", T0 + 1000)], customer_id="c1", email="a@x.io"),
        batch([custom("e", T0 + 2000)], customer_id="c2", email="b@x.io"),
    ]
    _, state = run_all(objs, None, settings)
    return objs, state


# --- item 4: never backwards -------------------------------------------------------------
def test_item4_a_replayed_older_batch_changes_no_identifier_and_merges_nothing() -> None:
    for settings in (MappingSettings(), MERGING):
        objs, state = _history(settings)
        assert (state.id_type, state.id_value, state.email) == ("id", "c2", "b@x.io")
        for obj in objs:  # the whole stream again, as a replay does
            again = run(obj, state, settings)
            assert _moves(again) == [], (settings, obj)
            assert {(c.id_type, c.id_value) for c in again.commands} == {("id", "c2")}
            assert (again.state.customer_id, again.state.email) == ("c2", "b@x.io")
            assert (again.state.id_type, again.state.id_value) == ("id", "c2")
            state = again.state
        assert "stale_identity" in reasons(run(objs[1], state, settings))


def test_item4_a_newer_sighting_of_the_same_identity_keeps_an_older_change_out() -> None:
    """c1 at t1, c2 at t3, c2 seen again at t10: a lagging c1 from t5 is older than t10."""
    results, state = run_all([
        batch([custom("e", T0 + 1)], customer_id="c1"),
        batch([custom("e", T0 + 3)], customer_id="c2"),
        batch([custom("e", T0 + 10)], customer_id="c2"),
    ], None, MERGING)
    assert state.customer_id_ms == T0 + 10
    late = run(batch([custom("e", T0 + 5)], customer_id="c1"), state, MERGING)
    assert _moves(late) == [] and late.state.id_value == "c2"


def test_item4_identities_carry_the_time_they_were_set() -> None:
    _, state = _history()
    assert (state.customer_id_ms, state.email_ms) == (T0 + 2000, T0 + 2000)
    only_email = run(batch([custom("e", T0 + 5000)], customer_id=None, email="b@x.io"), state)
    assert (only_email.state.customer_id_ms, only_email.state.email_ms) == (T0 + 2000, T0 + 5000)


def test_item4_a_lagging_audience_message_addresses_but_never_changes_the_person() -> None:
    for settings in (MappingSettings(), MERGING):
        _, state = _history(settings)
        lagging = audience_message(
            profile(audiences=[(7, "Fans", "add")], customer_id="c1", email="a@x.io"), ts=T0
        )
        result = run_audience(lagging, state, settings)
        assert _moves(result) == [("identify", "id", "c2", None, None)]
        assert identify_attributes(result) == {"SegmentMembership": "'7'"}  # no email regress
        assert (result.state.customer_id, result.state.email) == ("c2", "b@x.io")
        # Even a newer audience message does not change who the person is.
        newer = audience_message(profile(audiences=[(8, "B", "add")], customer_id="c9"),
                                 ts=T0 + 9000)
        later = run_audience(newer, result.state, settings)
        assert {(c.id_type, c.id_value) for c in later.commands} == {("id", "c2")}
        assert later.state.customer_id == "c2"


def test_item4_an_audience_message_fills_identities_of_an_unaddressed_user() -> None:
    """... with an unknown time: the batches (the source of identities) may replace them."""
    message = audience_message(profile(audiences=[(7, "Fans", "add")], customer_id="c1"))
    result = run_audience(message)
    assert _moves(result) == [("identify", "id", "c1", None, None)]
    assert (result.state.customer_id, result.state.customer_id_ms) == ("c1", 0)
    later = run(batch([custom("e", T0 - 5000)], customer_id="c1", email="a@x.io"), result.state)
    assert (later.state.email, later.state.customer_id_ms) == ("a@x.io", T0 - 5000)


# --- item 5: merging is opt-in -----------------------------------------------------------
def test_item5_merges_are_off_by_default() -> None:
    results, state = run_all([
        batch([custom("e", T0)], customer_id="c1", email="a@x.io"),
        batch([custom("e", T0 + 1)], customer_id="c2", email="a@x.io"),
        batch([custom("e", T0 + 2)], customer_id="c2", email="a@x.io"),
    ])
    assert not any("merge" in kinds(r) for r in results)
    # The new identifier is identified (a person of its own); the email stays with c1,
    # which already holds it in Customer.io, and is not sent to c2 again and again.
    assert _moves(results[1]) == [("identify", "id", "c2", None, None)]
    assert _moves(results[2]) == []
    assert [(c.id_type, c.id_value) for c in of_kind(results[1], "track")] == [("id", "c2")]


def test_item5_the_email_to_customer_id_upgrade_attaches_without_a_merge() -> None:
    for settings in (MappingSettings(), MERGING):
        results, _ = run_all([
            batch([custom("e", T0)], customer_id=None, email="a@x.io"),
            batch([custom("e", T0 + 1)], customer_id="c1", email="a@x.io"),
        ], None, settings)
        assert _moves(results[1]) == [("identify", "id", "c1", "a@x.io", None)]


def test_item5_merging_on_merges_a_newer_change_once_per_pair() -> None:
    results, state = run_all([
        batch([custom("e", T0)], customer_id="c1", email="a@x.io"),
        batch([custom("e", T0 + 1)], customer_id="c2", email="b@x.io"),
        batch([custom("e", T0 + 2)], customer_id="c1", email="a@x.io"),  # back: newer, same pair
        batch([custom("e", T0 + 3)], customer_id="c2", email="b@x.io"),
    ], None, MERGING)
    merges = [c.secondary for r in results for c in of_kind(r, "merge")]
    assert merges == [("id", "c1")]
    assert [c.id_value for c in of_kind(results[1], "merge")] == ["c2"]
    assert state.id_value == "c2"


def test_item5_email_mode_new_email_merges_only_when_on() -> None:
    for settings, merged in ((MappingSettings(user_id_type=UserIdType.EMAIL), []),
                             (MappingSettings(user_id_type=UserIdType.EMAIL, merge_people=True),
                              [("email", "a@x.io")])):
        results, _ = run_all([
            batch([custom("e", T0)], customer_id=None, email="a@x.io"),
            batch([custom("e", T0 + 1)], customer_id=None, email="b@x.io"),
        ], None, settings)
        assert [c.secondary for c in of_kind(results[1], "merge")] == merged
        assert _moves(results[1])[0] == ("identify", "email", "b@x.io", "b@x.io", None)


# --- item 6: an opt-out before the user can be addressed ---------------------------------
def test_item6_an_opt_out_without_identity_is_sent_once_the_user_can_be_addressed() -> None:
    first = run(batch([opt_out(True, T0)], customer_id=None))
    assert first.commands == [] and reasons(first) == ["no_identity"]
    later = run(batch([custom("e", T0 + 1)]), first.state)
    assert kinds(later) == ["identify", "unsubscribe", "track"]
    (unsubscribe,) = of_kind(later, "unsubscribe")
    assert unsubscribe.attributes == {"unsubscribed": True}
    assert (unsubscribe.id_type, unsubscribe.id_value, unsubscribe.timestamp) == (
        "id", "cust-1", T0 // 1000)
    again = run(batch([custom("e", T0 + 2)]), later.state)
    assert kinds(again) == ["track"]  # once


def test_item6_an_opt_in_after_it_cancels_the_kept_opt_out() -> None:
    results, state = run_all([batch([opt_out(True, T0)], customer_id=None),
                              batch([opt_out(False, T0 + 1)], customer_id=None),
                              batch([custom("e", T0 + 2)])])
    assert kinds(results[2]) == ["identify", "track"]


def test_item6_an_audience_message_that_addresses_the_user_sends_the_kept_opt_out() -> None:
    first = run(batch([opt_out(True, T0)], customer_id=None))
    result = run_audience(audience_message(profile(audiences=[(1, "A", "add")])), first.state)
    assert kinds(result) == ["identify", "unsubscribe"]


def test_item6_an_opted_out_user_under_a_new_identifier_is_unsubscribed_there_too() -> None:
    """Without a merge the new identifier is another Customer.io person: the opt-out is
    owed to it as well (once), and not to the same person again."""
    results, state = run_all([
        batch([opt_out(True, T0)], customer_id="c1"),
        batch([custom("e", T0 + 1)], customer_id="c2"),
        batch([custom("e", T0 + 2)], customer_id="c2"),
    ])
    assert kinds(results[1]) == ["identify", "unsubscribe", "track"]
    assert {(c.id_type, c.id_value) for c in results[1].commands} == {("id", "c2")}
    assert kinds(results[2]) == ["track"]


# --- item 8: audience changes in their own time order -------------------------------------
def test_item8_an_older_audience_change_is_ignored() -> None:
    left = run_audience(audience_message(profile(audiences=[(1, "A", "add")]), ts=T0))
    left = run_audience(audience_message(profile(audiences=[(1, "A", "delete")]), ts=T0 + 10),
                        left.state)
    assert left.state.audiences == {}
    lagging = run_audience(audience_message(profile(audiences=[(1, "A", "add"), (2, "B", "add")]),
                                            ts=T0 + 5), left.state)
    assert lagging.state.audiences == {"2": "B"}  # audience 2 had no later change
    assert identify_attributes(lagging) == {"SegmentMembership": "'2'"}
    assert "stale_audience_change" in reasons(lagging)
    assert lagging.state.audience_ms == {"1": T0 + 10, "2": T0 + 5}


def test_item8_a_renamed_audience_clears_its_old_flag() -> None:
    first = run_audience(audience_message(profile(audiences=[(1, "Buyers", "add")]), ts=T0),
                         None, PER_SEGMENT)
    assert identify_attributes(first) == {"SegmentMembership": "'1'", "In Buyers": True}
    renamed = run_audience(
        audience_message(profile(audiences=[(1, "Big Buyers", "attribute_update")]), ts=T0 + 1),
        first.state, PER_SEGMENT,
    )
    assert identify_attributes(renamed) == {"In Buyers": False, "In Big Buyers": True}
    assert renamed.state.audiences == {"1": "Big Buyers"}


def test_item4_a_wrong_clock_far_ahead_does_not_freeze_identities() -> None:
    """Identity times use trusted times only (issue 12 item 9): an event stamped ten years
    ahead of its Kafka record must not make every later, genuine change look stale."""
    import orjson

    from cioproc.mapping import map_batch, parse_batch

    def mapped(obj, state, received):
        return map_batch(parse_batch(orjson.dumps(obj), received), state, MERGING)

    ten_years = 10 * 365 * 86_400_000
    first = mapped(batch([custom("e", T0 + ten_years)], customer_id="c1"), None, T0)
    assert first.state.customer_id_ms <= T0 + 86_400_000
    later = mapped(batch([custom("e", T0 + 60_000)], customer_id="c2"), first.state, T0 + 60_000)
    assert later.state.id_value == "c2" and "stale_identity" not in reasons(later)
