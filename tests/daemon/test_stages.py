"""The stage-thread base and what stages report with (daemon/stages.py)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.daemon.stages import Count, LastError, Outage, StageThreads, Stats, take_batch
from imgwatch.db.store import ImageStore
from imgwatch.errors import DatabaseUnavailable
from tests.daemonproc import wait_for


class Squares(StageThreads[int]):
    """A stage as the file workers are built: batches taken until the stop marker."""

    def __init__(self, store: ImageStore, threads: int, gate: threading.Event) -> None:
        super().__init__("squares", threads, 8, store=store, outage=None)
        self.gate = gate  # each item waits for it: a stage busy for as long as a test says
        self.done: list[int] = []
        self.lock = threading.Lock()

    def _run(self) -> None:
        stopped = False
        while not stopped:
            items, stopped = take_batch(self.inbox, 3)
            for item in items:
                self.gate.wait(10)
                with self.lock:
                    self.done.append(item * item)

    def stop(self, deadline: float) -> bool:
        return self._join(deadline)


@pytest.fixture
def unopened_store(tmp_path: Path) -> ImageStore:
    """A store the stage holds but never asks: the base does not touch the database."""
    return ImageStore(URL.create("sqlite", database=str(tmp_path / "x.db")))


def test_a_stage_starts_does_its_work_and_stops_after_what_was_queued(
    unopened_store: ImageStore,
) -> None:
    open_gate = threading.Event()
    open_gate.set()
    stage = Squares(unopened_store, 3, open_gate)
    assert not stage.alive()  # not started yet
    stage.start()
    assert stage.alive()
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("squares"))
    assert names == ["squares-0", "squares-1", "squares-2"]
    for i in range(20):
        stage.inbox.put(i)
    assert stage.stop(time.monotonic() + 5)  # the markers go after the work
    assert sorted(stage.done) == sorted(i * i for i in range(20))
    assert not stage.alive()


def test_a_stage_stuck_past_its_deadline_is_reported_not_waited_for(
    unopened_store: ImageStore,
) -> None:
    gate = threading.Event()
    stage = Squares(unopened_store, 1, gate)
    stage.start()
    stage.inbox.put(7)
    wait_for(lambda: stage.queued() == 0, 5, "the item to be taken")
    started = time.monotonic()
    assert not stage.stop(started + 0.2)  # the item never ends while the gate is shut
    assert time.monotonic() - started < 2.0
    assert stage.alive() and stage.done == []
    gate.set()
    assert stage.stop(time.monotonic() + 5)  # it ends once the item does
    assert stage.done == [49] and not stage.alive()


def test_one_thread_is_named_after_its_stage(unopened_store: ImageStore) -> None:
    gate = threading.Event()
    gate.set()
    stage = Squares(unopened_store, 1, gate)
    stage.start()
    try:
        assert any(t.name == "squares" for t in threading.enumerate())
    finally:
        assert stage.stop(time.monotonic() + 5)


def test_take_batch_takes_up_to_the_limit_and_stops_at_the_marker() -> None:
    inbox: queue.Queue[int | None] = queue.Queue()
    for item in (1, 2, 3, 4, None, 5):
        inbox.put(item)
    assert take_batch(inbox, 3) == ([1, 2, 3], False)
    assert take_batch(inbox, 3) == ([4], True)  # the marker ends the batch
    assert take_batch(inbox, 3) == ([5], False)  # what came after it is left for later
    started = time.monotonic()
    assert take_batch(inbox, 3, timeout=0.05) == ([], False)  # nothing came in time
    assert time.monotonic() - started < 2.0
    inbox.put(None)
    assert take_batch(inbox, 3) == ([], True)


def test_stats_count_from_many_threads() -> None:
    stats = Stats()

    def add_many() -> None:
        for _ in range(1000):
            stats.add(Count.RECORDED)
        stats.add(Count.REJECTED, 5)

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (stats[Count.RECORDED], stats[Count.REJECTED], stats[Count.MISSING]) == (4000, 20, 0)


def test_an_outage_is_one_story_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imgwatch.daemon.stages")
    outage = Outage()
    outage.ok()  # nothing to end
    assert not outage.down and caplog.records == []
    for _ in range(5):  # every stage, every second
        outage.failed(DatabaseUnavailable("database x: writing rows failed: gone"))
    assert outage.down
    said = [r.getMessage() for r in caplog.records]
    assert said == ["database x: writing rows failed: gone; retrying, nothing is lost meanwhile"]
    outage.ok()
    outage.ok()
    assert not outage.down
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and said[1].startswith("database is back after ")


def test_an_outage_reminds_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Outage, "REMIND_EVERY", 0.0)
    outage = Outage()
    outage.failed(DatabaseUnavailable("down"))
    outage.failed(DatabaseUnavailable("still down"))
    reminders = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(reminders) == 1
    assert reminders[0].getMessage().startswith("database still unavailable after ")


def test_the_last_warning_is_kept_for_the_status_line() -> None:
    stats = Stats()
    handler = LastError(stats)
    logger = logging.getLogger("tests.daemon.stages.last_error")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        logger.info("all is well")
        assert stats.last_error == ""  # below a warning: not an error to show
        logger.warning("first line of it\nsecond line")
        assert stats.last_error == "first line of it"
        logger.error("x" * 500)
        assert stats.last_error == "x" * 200
    finally:
        logger.removeHandler(handler)
