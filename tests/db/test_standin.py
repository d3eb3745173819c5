"""The read-only stand-in (imgwatch/db/standin.py): reads pass through, writes are noted."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import URL

from imgwatch.db.standin import NotingStore
from imgwatch.db.store import ImageStore
from imgwatch.model import STATE_ID, Condition, ConditionKind, Status, utcnow
from imgwatch.reconcile.deletions import GoneRow
from tests.db.records import make_original_table, record
from tests.rows import all_rows, file_states


def held(rows: int) -> Condition:
    now = utcnow()
    return Condition(ConditionKind.DELETIONS_HELD, "", "mass_deletion", "held", now, now, rows=rows)


def test_reads_pass_through_to_the_database(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("d/b.jpg", status=Status.REJECTED)])
    store.set_condition(held(2))
    store.confirm_held_deletions()
    noting = NotingStore(store)
    assert noting.images_ready
    assert list(noting.file_state_pages()) == list(store.file_state_pages())
    assert [s[0] for page in noting.file_state_pages() for s in page] == ["a.jpg", "d/b.jpg"]
    assert [s[0] for page in noting.file_state_pages(names=("d/", None)) for s in page] == [
        "d/b.jpg"
    ]
    noting.release_connections()  # before a fork: reads go on over new connections
    assert noting.lookup_many(["a.jpg"]) == store.lookup_many(["a.jpg"])
    assert noting.lookup_many(["a.jpg", "x.jpg"]) == store.lookup_many(["a.jpg"])
    assert noting.known == {"a.jpg"}  # looked up, and has a row
    # An operator's confirmation counts: it is read, not assumed.
    (condition,) = noting.conditions()
    assert condition.confirmed_at is not None and condition == store.conditions()[0]


def test_writes_are_noted_and_change_nothing(store: ImageStore) -> None:
    store.upsert([record("a.jpg"), record("b.jpg"), record("c.jpg")])
    before = all_rows(store)
    noting = NotingStore(store)
    ids = {name: state[STATE_ID] for name, state in file_states(store).items()}
    new = [record("new.jpg"), record("a.jpg", size_bytes=99)]
    noting.write_prepared(noting.prepare_upsert(new))
    assert noting.mark_missing([ids["a.jpg"]], names=["a.jpg"]) == 1
    assert noting.mark_missing([ids["b.jpg"]]) == 1
    assert noting.forget([ids["c.jpg"], ids["b.jpg"]]) == 2
    noting.purge([GoneRow(ids["a.jpg"], "a.jpg")])
    hold = held(3)
    noting.set_condition(hold)
    assert noting.clear_condition(ConditionKind.DELETIONS_HELD, [""]) == 0
    assert noting.records == new
    assert noting.missing == ["a.jpg", str(ids["b.jpg"])]
    assert noting.forgotten == ["c.jpg", "b.jpg"]
    assert noting.purged == ["a.jpg"]
    assert noting.held is hold
    assert all_rows(store) == before
    assert store.conditions() == []


def test_a_database_without_tables_reads_as_empty_and_gets_none(db_url: URL) -> None:
    store = ImageStore(db_url)
    store.open(create=False)
    try:
        noting = NotingStore(store)
        assert not noting.images_ready
        assert list(noting.file_state_pages()) == []
        assert noting.lookup_many(["a.jpg"]) == {} and noting.known == set()
        assert noting.conditions() == []
        noting.write_prepared(noting.prepare_upsert([record("a.jpg")]))
        noting.set_condition(held(1))
        assert [r.file_name for r in noting.records] == ["a.jpg"]
        assert inspect(store.engine).get_table_names() == []
    finally:
        store.close()


def test_an_unadopted_table_is_read_but_not_ready_for_uploads(db_url: URL) -> None:
    make_original_table(db_url)
    store = ImageStore(db_url)
    store.open(create=False)
    try:
        noting = NotingStore(store)
        assert not noting.images_ready  # its uploads due are not asked for
        assert [s[0] for page in noting.file_state_pages() for s in page] == ["a.jpg", "b.png"]
        assert noting.lookup_many(["a.jpg"])["a.jpg"].wp_url == "https://x/a.jpg"
        assert noting.conditions() == []  # no conditions table yet
        assert inspect(store.engine).get_table_names() == ["images"]
    finally:
        store.close()
