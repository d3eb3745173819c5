"""Conditions (imgwatch/db/conditions.py): recorded, refreshed, cleared, confirmed."""

from __future__ import annotations

import dataclasses
import datetime as dt

from imgwatch.db.store import ImageStore
from imgwatch.model import Condition, ConditionKind, utcnow

PAUSED = ConditionKind.UPLOADS_PAUSED
HELD = ConditionKind.DELETIONS_HELD


def paused(owner: str, reason: str = "unreachable", message: str = "") -> Condition:
    now = utcnow()
    return Condition(PAUSED, owner, reason, message or f"WordPress is {reason}", now, now)


def held(rows: int) -> Condition:
    now = utcnow()
    return Condition(HELD, "", "mass_deletion", f"{rows} rows would go", now, now, rows=rows)


def test_conditions_are_recorded_and_read_back_oldest_first(store: ImageStore) -> None:
    assert store.conditions() == []
    first = paused("host-a:1")
    second = held(12)
    store.set_condition(first)
    store.set_condition(second)
    assert store.conditions() == [first, second]


def test_a_condition_set_again_is_refreshed_not_added(store: ImageStore) -> None:
    since = utcnow() - dt.timedelta(minutes=5)
    store.set_condition(dataclasses.replace(paused("host-a:1"), since=since, checked_at=since))
    store.set_condition(paused("host-b:2"))
    later = dataclasses.replace(paused("host-a:1", reason="firewall"), since=since)
    store.set_condition(later)
    got = {c.owner: c for c in store.conditions()}
    assert len(store.conditions()) == 2
    assert got["host-a:1"] == later
    # Same owner, another kind: another condition.
    store.set_condition(dataclasses.replace(held(3), owner="host-a:1"))
    assert [(c.kind, c.owner) for c in store.conditions()] == [
        (PAUSED, "host-a:1"),
        (PAUSED, "host-b:2"),
        (HELD, "host-a:1"),
    ]


def test_an_overlong_owner_and_reason_are_cut_to_fit_and_still_match(store: ImageStore) -> None:
    owner = "h" * 200 + ":1"
    store.set_condition(paused(owner, reason="r" * 40))
    store.set_condition(paused(owner, reason="r" * 40, message="again"))
    (got,) = store.conditions()
    assert (got.owner, got.reason, got.message) == ("h" * 128, "r" * 32, "again")
    assert store.clear_condition(PAUSED, [owner]) == 1
    assert store.conditions() == []


def test_clearing_ends_only_that_kind_of_those_owners(store: ImageStore) -> None:
    for owner in ("host-a:1", "host-a:2", "host-b:3"):
        store.set_condition(paused(owner))
    store.set_condition(held(20))
    assert store.clear_condition(PAUSED, []) == 0
    assert store.clear_condition(HELD, ["host-a:1"]) == 0
    assert store.clear_condition(PAUSED, ["host-a:1", "host-a:2", "host-c:9"]) == 2
    assert [(c.kind, c.owner) for c in store.conditions()] == [(PAUSED, "host-b:3"), (HELD, "")]
    assert store.clear_condition(HELD, [""]) == 1
    assert [c.owner for c in store.conditions()] == ["host-b:3"]


def test_held_deletions_are_confirmed_once_and_the_confirmation_kept(store: ImageStore) -> None:
    assert store.confirm_held_deletions() == 0
    store.set_condition(paused("host-a:1"))
    store.set_condition(held(20))
    before = utcnow()
    assert store.confirm_held_deletions() == 1
    assert store.confirm_held_deletions() == 0  # confirmed already
    pause, hold = store.conditions()
    assert pause.confirmed_at is None  # only held deletions are confirmed
    assert hold.confirmed_at is not None and hold.confirmed_at >= before
    # Seen to hold again: the operator's word stands...
    store.set_condition(held(20))
    assert store.conditions()[1].confirmed_at == hold.confirmed_at
    # ... unless what is held changed, and must be confirmed anew.
    store.set_condition(held(25), keep_confirmation=False)
    assert store.conditions()[1].confirmed_at is None
    assert store.conditions()[1].rows == 25
    assert store.confirm_held_deletions() == 1
