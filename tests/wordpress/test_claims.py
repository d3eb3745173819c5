"""Claims on uploads (wordpress/claims.py): host:pid owners, and those of dead processes."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import update

from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.model import Condition, ConditionKind, ImageRecord, Status, UploadJob, utcnow
from imgwatch.textdigest import text_digest
from imgwatch.wordpress.claims import claim_owner, dead_owners, release_dead_claims, take_over
from tests.rows import row_of

HOST = socket.gethostname()


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of another process of this host, running."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def claimed(store: ImageStore, owners: list[str]) -> dict[str, UploadJob]:
    """One pending row per owner, claimed by it."""
    store.upsert(
        [
            ImageRecord(
                f"{i}.jpg",
                f"{i}.jpg",
                "d",
                Status.PENDING,
                sha256=f"{i:064d}",
                mime_type="image/jpeg",
            )
            for i in range(len(owners))
        ]
    )
    jobs = {}
    for job, owner in zip(store.due_uploads(), owners, strict=True):
        assert store.mark_uploading(job, owner, lease=600)
        jobs[owner] = job
    return jobs


def pause_of(owner: str) -> Condition:
    now = utcnow()
    return Condition(ConditionKind.UPLOADS_PAUSED, owner, "firewall", "paused", now, now)


def test_the_owner_is_this_host_and_process() -> None:
    host, _, pid = claim_owner().rpartition(":")
    assert (host, pid) == (HOST, str(os.getpid()))


def test_only_this_host_s_ended_processes_are_dead(live_pid: int) -> None:
    gone = f"{HOST}:{dead_pid()}"
    owners = [
        gone,
        f"{HOST}:{live_pid}",
        claim_owner(),  # this process
        f"other-{HOST}:{dead_pid()}",  # another host's pids say nothing here
        f"{HOST}:not-a-pid",
        f"{HOST}:",
        HOST,
    ]
    assert dead_owners(owners) == [gone]


def test_the_claims_of_dead_processes_are_released_at_once(
    store: ImageStore, live_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead, alive, elsewhere = f"{HOST}:{dead_pid()}", f"{HOST}:{live_pid}", "host-b:1"
    jobs = claimed(store, [dead, alive, elsewhere, claim_owner()])
    assert release_dead_claims(store) == 1
    assert "released 1 upload claim(s) of earlier processes on this host" in caplog.text
    freed = row_of(store, jobs[dead].file_name) or {}
    assert freed["claimed_until"] is None
    # Another uploader may take it now; the others' claims still hold.
    assert [j.file_name for j in store.due_uploads(owner="host-c:9")] == [jobs[dead].file_name]
    for owner in (alive, elsewhere, claim_owner()):
        assert (row_of(store, jobs[owner].file_name) or {})["claimed_until"] is not None
    assert release_dead_claims(store) == 0  # nothing left to release


def test_the_pause_a_dead_process_recorded_goes_with_it(store: ImageStore, live_pid: int) -> None:
    dead, alive = f"{HOST}:{dead_pid()}", f"{HOST}:{live_pid}"
    for owner in (dead, alive, "host-b:1"):
        store.set_condition(pause_of(owner))
    held = Condition(ConditionKind.DELETIONS_HELD, dead, "mass", "held", utcnow(), utcnow())
    store.set_condition(held)
    assert release_dead_claims(store) == 0  # no claims: the conditions go all the same
    left = {(c.kind, c.owner) for c in store.conditions()}
    assert left == {
        (ConditionKind.UPLOADS_PAUSED, alive),
        (ConditionKind.UPLOADS_PAUSED, "host-b:1"),
        (ConditionKind.DELETIONS_HELD, dead),  # the guard's hold is the database's
    }


def test_taking_over_sets_what_wordpress_has_for_rows_uploaded_before_it_was_kept(
    store: ImageStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dead = f"{HOST}:{dead_pid()}"
    jobs = claimed(store, [dead, "host-b:1"])
    done = jobs["host-b:1"]
    assert store.record_upload(done, 7, "https://wp/1.jpg", "")
    with store.engine.begin() as conn:  # as an imgwatch that kept no digest left it
        conn.execute(
            update(images).where(images.c.id == done.id).values(wp_text_digest=None, caption="C")
        )
    take_over(store)
    assert (row_of(store, jobs[dead].file_name) or {})["claimed_until"] is None
    row = row_of(store, done.file_name) or {}
    assert row["wp_text_digest"] == text_digest(row["title"], row["description"], "C", None)
    assert "1 uploaded row(s) from before imgwatch kept what it sent" in caplog.text
    caplog.clear()
    take_over(store)
    assert "uploaded row(s) from before" not in caplog.text
