"""The mass-deletion guard and the delete policies, on SQLite and the real MariaDB."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from imgwatch.deletions import DeleteGuard, Deletions, GoneRow, HoldState
from imgwatch.store import DELETIONS_HELD, DONE, MISSING, ImageRecord, ImageStore


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


def rows(store: ImageStore, n: int) -> list[GoneRow]:
    store.upsert(
        [
            ImageRecord(file_name=f"{i}.jpg", title=None, description=None, status=DONE)
            for i in range(n)
        ]
    )
    return [GoneRow(r["id"], r["file_name"]) for r in store.all_rows()]


def statuses(store: ImageStore) -> dict[str, Any]:
    return {r["file_name"]: r["status"] for r in store.all_rows()}


def hold_row(store: ImageStore) -> Any:
    return next((c for c in store.conditions() if c.kind == DELETIONS_HELD), None)


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
    assert set(statuses(store).values()) == {DONE}
    assert hold.current is not None and hold.current.rows == 11
    recorded = hold_row(store)
    assert recorded.rows == 11 and "11 of 12 row(s) would be" in recorded.message
    assert deletions.settle(gone[:11], 12, whole_tree=True) == (0, 11)
    assert caplog.text.count("deletions held: ") == 1
    # While held, a run of delete events waits with it, however small.
    assert deletions.settle(gone[11:], 12, whole_tree=False) == (0, 1)
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
        assert sorted(left.values()) == [DONE] + [MISSING] * 11
    else:
        assert left == {"11.jpg": DONE}


def test_a_few_at_a_time_are_settled_at_once(store: ImageStore) -> None:
    gone = rows(store, 12)
    deletions = Deletions(store, policy="missing", guard=DeleteGuard(0.5, 10), where="/x")
    assert deletions.settle(gone[:6], 12, whole_tree=False) == (6, 0)  # half: not more
    assert deletions.settle(gone[6:], 12, whole_tree=True) == (6, 0)  # fewer than 10
    assert set(statuses(store).values()) == {MISSING}


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
