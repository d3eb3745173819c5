"""Several hosts, one database, for real: a 3-node MariaDB Galera cluster.

Three daemons, each on its own node, over one tree and one WordPress, with one
node killed and started again while files arrive. On a multi-writer cluster two
nodes writing one row at once is normal: the loser's commit fails with error 1213
(certification failed), and the store runs that transaction again at once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from imgwatch.model import Status
from tests.conftest import running
from tests.daemon.test_http import get
from tests.daemonproc import DaemonProcess, rows_by_name, start, wait_for, wait_rows, wp_settings
from tests.db.records import record
from tests.galera import GaleraCluster
from tests.imagefiles import write_image
from tests.servers import WordPress, free_port

WAVE = 12  # files per wave


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraCluster]:
    yield from running(GaleraCluster(), "a Galera cluster")


def uploaded(names: set[str]) -> Any:
    """A wait_rows check: exactly these rows, every one done and in WordPress."""
    return lambda rows: (
        set(rows) == names
        and all(r["status"] == Status.DONE and r["wp_url"] for r in rows.values())
    )


def row_count(url: URL) -> int:
    store = ImageStore(url)
    try:
        return store.count_rows()
    finally:
        store.close()


def healthy(port: int) -> bool:
    return get(port, "/healthz")[0] == 200


def test_three_daemons_on_three_nodes_record_and_upload_each_file_once(
    tmp_path: Path, image_dir: Path, galera: GaleraCluster, live_wordpress: WordPress
) -> None:
    urls = galera.create_database()
    site = live_wordpress
    media_before = site.media_count()
    ports = [free_port() for _ in urls]
    # Polling, as over a shared network folder (where inotify sees no other host).
    settings = {**wp_settings(site), "watch_mode": "polling", "poll_interval": "0.3"}
    names: set[str] = set()

    def wave(number: int) -> None:
        batch = {f"wave{number}/{i:02d}.jpg" for i in range(WAVE)}
        for name in sorted(batch):
            write_image(image_dir / name, 20, 20)
        names.update(batch)

    daemons: list[DaemonProcess] = []
    try:
        for i, (url, port) in enumerate(zip(urls, ports, strict=True)):
            listen = f"127.0.0.1:{port}"
            daemons.append(
                start(tmp_path / f"d{i}", image_dir, url, **settings, metrics_listen=listen)
            )
        wave(1)
        wait_rows(urls[0], uploaded(names), timeout=60)
        # The third node dies while the daemons are busy with a wave, and more
        # files come while it is down; its daemon waits, the others go on.
        wave(2)
        wait_rows(urls[0], lambda rows: any(n.startswith("wave2/") for n in rows), timeout=30)
        galera.nodes[2].kill()
        wave(3)
        wait_rows(urls[0], lambda rows: names <= set(rows), timeout=60)
        galera.nodes[2].restart()
        galera.wait_synced()
        wave(4)
        rows = [wait_rows(url, uploaded(names), timeout=90) for url in urls]
        for port in ports:
            wait_for(partial(healthy, port), 30, "a healthy daemon")
        assert all(d.process.poll() is None for d in daemons)
        for d in daemons:
            assert d.stop() == 0
    finally:
        for d in daemons:
            d.close()
    logs = [d.log() for d in daemons]
    # Every node has the same rows, each file once, each with its own media item.
    facts = [{n: (r["id"], r["sha256"], r["wp_media_id"]) for n, r in by.items()} for by in rows]
    assert facts[0] == facts[1] == facts[2]
    assert [row_count(url) for url in urls] == [len(names)] * 3
    assert len({r["wp_media_id"] for r in rows[0].values()}) == len(names)
    assert site.media_count() == media_before + len(names)
    errors = [[line for line in log.splitlines() if " ERROR " in line] for log in logs]
    # A write conflict is a warning, and retried; never an error line.
    conflicts = re.compile(r"1213|[Dd]eadlock|certification")
    assert not [e for lines in errors for e in lines if conflicts.search(e)]
    # The daemons whose node stayed up saw no database trouble at all.
    assert not [e for e in errors[0] + errors[1] if "database" in e]


def test_a_write_that_loses_a_certification_conflict_is_run_again(
    galera: GaleraCluster, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, _ = galera.create_database()
    store = ImageStore(second)
    store.open()
    other = pymysql.connect(
        host="127.0.0.1",
        port=first.port,
        user=first.username,
        password=first.password,
        database=first.database,
        autocommit=True,
    )
    try:
        store.upsert([record("a.jpg", sha256="1" * 64)])
        wait_for(lambda: "a.jpg" in rows_by_name(first), 10, "the row on the first node")
        raced: list[bool] = []

        def commit_on_the_first_node_first(_conn: Any) -> None:
            # Just before the store commits on the second node: the same row is
            # changed and committed on the first, so the store's commit loses.
            if not raced:
                raced.append(True)
                with other.cursor() as cur:
                    cur.execute("UPDATE images SET title = 'edited' WHERE file_name = 'a.jpg'")

        event.listen(store.engine, "commit", commit_on_the_first_node_first)
        with caplog.at_level(logging.WARNING, logger="imgwatch.db.engine"):
            store.upsert([record("a.jpg", sha256="2" * 64)])
    finally:
        other.close()
        store.close()
    assert raced
    # Once, as a rule; again if the retry came before this node had applied the
    # other's write.
    said = {(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING}
    assert said == {
        (
            "WARNING",
            "write conflict with another node while writing rows "
            "(certification failed or deadlock, error 1213); retrying",
        )
    }
    # Both writes stand, in the order they were committed: the edit on the first
    # node (a person's title is kept by the upsert), then the store's new content.
    for url in (first, second):
        row = wait_rows(url, lambda rows: rows["a.jpg"]["sha256"] == "2" * 64, timeout=10)
        assert row["a.jpg"]["title"] == "edited"
