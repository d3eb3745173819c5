"""The mass-deletion guard and the delete policies, on SQLite and the real MariaDB."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from imgwatch.db.store import ImageStore
from imgwatch.model import ConditionKind, ImageRecord, Status
from imgwatch.reconcile.deletions import DeleteGuard, Deletions, GoneRow, HoldState
from tests.rows import all_rows


@pytest.mark.parametrize(
    ("gone", "live", "held"),
    [
        (100, 150, True),  # two thirds, and 100 of them
        (99, 99, False),  # all of them, but fewer than 100
        (150, 1000, False),  # 100 or more, but not more than half
        (501, 1000, True),
        (500, 1000, False),  # exactly half is not more than half
    ],
)
def test_the_default_guard(gone: int, live: int, held: bool) -> None:
    assert DeleteGuard().holds(gone, live) is held


def test_an_empty_tree_is_held_unless_the_guard_is_off() -> None:
    assert DeleteGuard().holds(1, 1, empty=True)
    assert not DeleteGuard(share=1.0).holds(1000, 1000, empty=True)  # an inbox, say


def rows(store: ImageStore, n: int) -> list[GoneRow]:
    store.upsert(
        [
            ImageRecord(file_name=f"{i}.jpg", title=None, description=None, status=Status.DONE)
            for i in range(n)
        ]
    )
    return [GoneRow(r["id"], r["file_name"]) for r in all_rows(store)]


def statuses(store: ImageStore) -> dict[str, Any]:
    return {r["file_name"]: r["status"] for r in all_rows(store)}


def hold_row(store: ImageStore) -> Any:
    return next((c for c in store.conditions() if c.kind == ConditionKind.DELETIONS_HELD), None)


@pytest.mark.parametrize("policy", ["missing", "forget"])
def test_held_then_void_then_confirmed(
    store: ImageStore, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gone = rows(store, 12)
    hold = HoldState()
    guard = DeleteGuard(0.5, 10)
    deletions = Deletions(store, policy=policy, guard=guard, where="/srv/images", hold=hold)
    # 11 of 12 at once: held, nothing changed, said once and recorded.
    assert deletions.settle(gone[:11], 12, whole_tree=True) == (0, 11)
    assert set(statuses(store).values()) == {Status.DONE}
    assert hold.current is not None and hold.current.rows == 11
    recorded = hold_row(store)
    assert recorded.rows == 11 and "11 of 12 row(s) would be" in recorded.message
    assert deletions.settle(gone[:11], 12, whole_tree=True) == (0, 11)
    assert caplog.text.count("deletions held: ") == 1
    # While held, a run of delete events waits with it, however small; the next look
    # at the whole tree counts it.
    assert deletions.settle(gone[11:], 12, whole_tree=False) == (0, 1)
    assert "1 more deletion(s) held with the others" in caplog.text
    assert deletions.settle(gone, 12, whole_tree=True) == (0, 12)
    assert hold_row(store).rows == 12
    # The files came back: nothing happened.
    assert deletions.settle([], 12, whole_tree=True) == (0, 0)
    assert hold.current is None and hold_row(store) is None
    assert "are void" in caplog.text
    # Held again, then an operator confirms: the next reconcile applies it.
    assert deletions.settle(gone[:11], 12, whole_tree=True) == (0, 11)
    assert store.confirm_held_deletions() == 1
    assert deletions.settle(gone[:11], 12, whole_tree=False) == (0, 11)  # not a reconcile
    assert deletions.settle(gone[:11], 12, whole_tree=True) == (11, 0)
    assert hold_row(store) is None
    left = statuses(store)
    if policy == "missing":
        assert sorted(left.values()) == [Status.DONE] + [Status.MISSING] * 11
    else:
        assert left == {"11.jpg": Status.DONE}


def test_a_confirmation_covers_what_was_held_not_more(store: ImageStore) -> None:
    gone = rows(store, 12)
    deletions = Deletions(store, policy="forget", guard=DeleteGuard(0.5, 10), where="/x")
    assert deletions.settle(gone[:11], 12, whole_tree=True) == (0, 11)
    assert store.confirm_held_deletions() == 1
    # Before the reconcile that would apply it, the share came up empty: all 12 gone.
    assert deletions.settle(gone, 12, whole_tree=True, empty_tree=True) == (0, 12)
    recorded = hold_row(store)
    assert recorded.rows == 12 and recorded.confirmed_at is None  # to be confirmed anew
    assert len(statuses(store)) == 12


def test_after_a_hold_the_rest_is_settled_once_it_stops_changing(store: ImageStore) -> None:
    gone = rows(store, 12)
    deletions = Deletions(store, policy="forget", guard=DeleteGuard(0.5, 10), where="/x")
    assert deletions.settle(gone[:11], 12, whole_tree=True) == (0, 11)
    # A sync tool refilling the folder: 8 back, 3 not yet. Too few to hold, but the
    # refill may not be over: held until a look finds the same.
    assert deletions.settle(gone[:3], 12, whole_tree=True) == (0, 3)
    assert "3 row(s) still gone in /x after a hold of 11" in hold_row(store).message
    assert deletions.settle(gone[:1], 12, whole_tree=True) == (0, 1)  # still coming
    assert deletions.settle(gone[:1], 12, whole_tree=True) == (1, 0)  # stayed: settled
    assert hold_row(store) is None and len(statuses(store)) == 11


def test_a_hold_cleared_elsewhere_ends_here_too(store: ImageStore) -> None:
    gone = rows(store, 12)
    hold = HoldState()
    deletions = Deletions(
        store, policy="missing", guard=DeleteGuard(0.5, 10), where="/x", hold=hold
    )
    deletions.settle(gone[:11], 12, whole_tree=True)
    store.clear_condition(ConditionKind.DELETIONS_HELD, [""])  # another host saw the files back
    assert hold.current is not None
    assert deletions.settle([], 12, whole_tree=True) == (0, 0)
    assert hold.current is None


def test_a_hold_recorded_by_another_process_holds_this_ones_deletes(store: ImageStore) -> None:
    gone = rows(store, 12)
    Deletions(store, policy="missing", guard=DeleteGuard(0.5, 10), where="/x").settle(
        gone[:11], 12, whole_tree=True
    )
    hold = HoldState()  # a daemon started after the hold was recorded
    mine = Deletions(store, policy="missing", guard=DeleteGuard(0.5, 10), where="/x", hold=hold)
    assert mine.settle(gone[11:], 12, whole_tree=False) == (0, 1)
    assert hold.current is not None and hold.current.rows == 11


def test_runs_just_before_count_with_a_run(store: ImageStore) -> None:
    gone = rows(store, 30)
    deletions = Deletions(store, policy="missing", guard=DeleteGuard(0.5, 10), where="/x")
    # 10 of 30: not more than half. 10 more just after: 20 of 30 in all, held.
    assert deletions.settle(gone[:10], 30, whole_tree=False) == (10, 0)
    assert deletions.settle(gone[10:20], 30, whole_tree=False, earlier=10) == (0, 10)


def test_a_few_at_a_time_are_settled_at_once(store: ImageStore) -> None:
    gone = rows(store, 12)
    deletions = Deletions(store, policy="missing", guard=DeleteGuard(0.5, 10), where="/x")
    assert deletions.settle(gone[:6], 12, whole_tree=False) == (6, 0)  # half: not more
    assert deletions.settle(gone[6:], 12, whole_tree=True) == (6, 0)  # fewer than 10
    assert set(statuses(store).values()) == {Status.MISSING}


def test_an_empty_tree_is_held_whatever_the_count(store: ImageStore) -> None:
    gone = rows(store, 2)
    deletions = Deletions(store, policy="forget", guard=DeleteGuard(), where="/mnt/share")
    assert deletions.settle(gone, 2, whole_tree=True, empty_tree=True) == (0, 2)
    assert "image directory /mnt/share is empty but 2 row(s)" in hold_row(store).message
    assert len(statuses(store)) == 2


def test_purge_hands_rows_to_the_upload_side(store: ImageStore) -> None:
    gone = rows(store, 3)
    handed: list[GoneRow] = []
    deletions = Deletions(
        store, policy="purge", guard=DeleteGuard(), where="/x", purge=handed.extend
    )
    assert deletions.settle(gone, 100, whole_tree=False) == (3, 0)
    assert handed == gone
    assert len(statuses(store)) == 3  # the upload side removes each row after its item
    # Without WordPress there is no media item: a purge is a forget.
    plain = Deletions(store, policy="purge", guard=DeleteGuard(), where="/x")
    assert plain.settle(gone, 100, whole_tree=False) == (3, 0)
    assert statuses(store) == {}
