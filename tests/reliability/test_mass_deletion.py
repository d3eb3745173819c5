"""A tree that vanishes never empties the library.

A sync tool wiping the folder before refilling it, a share that mounts empty, a
wrong IMGWATCH_IMAGE_DIR: in each delete mode (missing, forget, purge), against
the real daemon, MariaDB and WordPress, nothing is deleted while the guard holds,
the same rows and media items are there once the files are back, and an operator's
confirmation applies the deletes. (The guard's size is lowered to 10 rows here so
that a tree of 24 files is "large"; its rule is the same at the default 100.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from imgwatch.model import Status
from tests.daemon.test_http import get, metric, wait_status
from tests.daemonproc import (
    DaemonProcess,
    daemon_env,
    rows_by_name,
    start,
    wait_for,
    wait_rows,
    wp_settings,
)
from tests.imagefiles import write_image
from tests.runner import run
from tests.servers import MariaDB, WordPress, free_port
from tests.wordpress.test_uploader import wp_env

FILES = 24
GUARD = {"delete_guard_min": "10"}


def album(image_dir: Path) -> dict[str, bytes]:
    """A tree of FILES images; their names and bytes, to put them back later."""
    for i in range(FILES):
        write_image(image_dir / "album" / f"{i:02d}.jpg", 16, 16)
    return {
        p.relative_to(image_dir).as_posix(): p.read_bytes() for p in (image_dir / "album").iterdir()
    }


def restore(image_dir: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = image_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def status_json(image_dir: Path, db: URL) -> dict[str, Any]:
    done = run("status", "--json", env=daemon_env(image_dir, db))
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def same(rows: dict[str, dict[str, Any]]) -> set[tuple[Any, ...]]:
    """What must not change while deletions are held: the rows and their media."""
    return {(n, r["id"], r["status"], r["wp_media_id"], r["wp_url"]) for n, r in rows.items()}


def held(
    daemon: DaemonProcess, db: URL, image_dir: Path, port: int, rows: int, *, nth: int = 1
) -> dict[str, Any]:
    """The hold (the nth in this daemon's life), where an operator looks: log,
    STATUS=, status, metric, health."""
    said = rf"deletions held: [^\n]*\b{rows}\b"
    wait_for(lambda: daemon.log_count(said) >= nth, 30, f"hold number {nth} in the log")
    seen = len(daemon.all_messages())
    wait_for(
        lambda: any(f"{rows} deletion(s) held" in m for m in daemon.all_messages()[seen:]),
        10,
        "STATUS= with the hold",
    )
    report: dict[str, Any] = status_json(image_dir, db)["deletions_held"]
    assert report is not None and report["rows"] == rows and not report["confirmed"]
    text = run("status", env=daemon_env(image_dir, db)).stdout
    assert "deletions held since" in text and "imgwatch retry --confirm-deletes" in text
    assert metric(get(port, "/metrics")[1], "imgwatch_deletions_held") == rows
    body = json.loads(wait_status(port, "/healthz", 503))
    assert body["reason"].startswith("deletions held: ")
    return report


@pytest.mark.parametrize("mode", ["missing", "forget", "purge"])
def test_a_vanished_tree_is_held_then_restored_or_confirmed(
    tmp_path: Path,
    image_dir: Path,
    mariadb: MariaDB,
    live_wordpress: WordPress,
    mode: str,
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    port = free_port()
    files = album(image_dir)
    write_image(image_dir / "keep.jpg")  # not all of the tree goes: the share rule holds
    settings = {
        **wp_settings(site),
        **GUARD,
        "on_delete": mode,
        "metrics_listen": f"127.0.0.1:{port}",
    }
    with start(tmp_path, image_dir, db, **settings) as daemon:
        before = wait_rows(
            db, lambda r: len(r) == FILES + 1 and all(x["wp_url"] for x in r.values())
        )
        media = site.media_count()
        # A sync tool wipes the folder: one run of deletes, all of the rows.
        shutil.rmtree(image_dir / "album")
        held(daemon, db, image_dir, port, FILES)
        assert same(rows_by_name(db)) == same(before)
        assert site.media_count() == media
        # ... and refills it: nothing happened.
        restore(image_dir, files)
        wait_rows(db, lambda r: all((image_dir / n).exists() for n in r))
        daemon.signal(signal.SIGHUP)  # else the next look is within a minute
        daemon.wait_log(r"deletions no longer held: the \d+ held deletion\(s\) are void")
        assert status_json(image_dir, db)["deletions_held"] is None
        assert same(rows_by_name(db)) == same(before)
        assert site.media_count() == media
        assert get(port, "/healthz")[0] == 200
        # Gone for real this time: held again, then confirmed by an operator.
        shutil.rmtree(image_dir / "album")
        held(daemon, db, image_dir, port, FILES, nth=2)
        confirmed = run("retry", "--confirm-deletes", env=daemon_env(image_dir, db))
        assert confirmed.returncode == 0, confirmed.stderr
        assert f"{FILES} held deletion(s) confirmed" in confirmed.stdout
        if mode == "missing":
            after = wait_rows(
                db, lambda r: all(x["status"] == Status.MISSING for n, x in r.items() if n in files)
            )
            assert {r["id"] for r in after.values()} == {r["id"] for r in before.values()}
        else:
            wait_rows(db, lambda r: set(r) == {"keep.jpg"})
        gone = FILES if mode == "purge" else 0
        wait_for(lambda: site.media_count() == media - gone, 30, "the media items")
        daemon.wait_log(r"deletions no longer held: applied \d+ confirmed deletion\(s\)")
        assert metric(get(port, "/metrics")[1], "imgwatch_deletions_held") == 0
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize("mode", ["missing", "forget", "purge"])
def test_a_wrong_image_directory_deletes_nothing(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress, mode: str
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    album(image_dir)
    env = {**daemon_env(image_dir, db), **wp_env(site), "IMGWATCH_DELETE_GUARD_MIN": "10"}
    assert run("--rescan", env=env).returncode == 0
    before = rows_by_name(db)
    media = site.media_count()
    # A typo in IMGWATCH_IMAGE_DIR: another folder, with a few files of its own.
    other = tmp_path / "other"
    write_image(other / "stray.jpg")
    env["IMGWATCH_ON_DELETE"] = mode
    wrong = {**env, "IMGWATCH_IMAGE_DIR": str(other)}
    rescanned = run("--rescan", env=wrong)
    assert rescanned.returncode == 1  # deletes nothing, and says so in its exit code
    assert f"; {FILES} deletion(s) held" in rescanned.stdout
    assert rescanned.stderr.count("deletions held: ") == 1
    kept = rows_by_name(db)
    assert same({n: kept[n] for n in before}) == same(before)
    assert site.media_count() == media + 1  # stray.jpg, recorded; nothing deleted
    # The daemon started the same way holds too, from its startup reconcile.
    port = free_port()
    settings = {
        **wp_settings(site),
        **GUARD,
        "on_delete": mode,
        "metrics_listen": f"127.0.0.1:{port}",
    }
    with start(tmp_path, other, db, **settings) as daemon:
        held(daemon, db, other, port, FILES)
        assert daemon.stop() == 0
    kept = rows_by_name(db)
    assert same({n: kept[n] for n in before}) == same(before)
    # The right directory again: the album is back, nothing happened to it; the one
    # row still gone (stray.jpg's) is settled once a second look finds it gone too.
    righted = run("--rescan", env=env)
    assert "1 row(s) still gone" in righted.stderr and righted.returncode == 1
    righted = run("--rescan", env=env)
    assert "deletions no longer held: most files are back" in righted.stderr
    kept = rows_by_name(db)
    assert same({n: kept[n] for n in before}) == same(before)
    # stray.jpg's row: marked missing, forgotten, or purged with its media item.
    assert ("stray.jpg" in kept) is (mode == "missing")
    assert site.media_count() == media + (mode != "purge")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.mark.parametrize("mode", ["missing", "forget", "purge"])
def test_a_share_that_mounts_empty_deletes_nothing(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress, mode: str
) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting needs root")
    db = mariadb.create_database()
    site = live_wordpress
    port = free_port()
    album(image_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = {**wp_settings(site), "on_delete": mode, "metrics_listen": f"127.0.0.1:{port}"}
    with start(tmp_path, image_dir, db, **settings) as daemon:
        before = wait_rows(db, lambda r: len(r) == FILES and all(x["wp_url"] for x in r.values()))
        media = site.media_count()
        # An empty file system mounted over the folder: nothing there, at the default
        # guard too (an empty tree is held whatever the count).
        mount("--bind", str(empty), str(image_dir))
        try:
            daemon.wait_log(r"restarting the watch and reconciling")
            held(daemon, db, image_dir, port, FILES)
            assert same(rows_by_name(db)) == same(before)
            assert site.media_count() == media
        finally:
            subprocess.run(["umount", str(image_dir)], check=False, capture_output=True)
        daemon.wait_log(r"deletions no longer held: the \d+ held deletion\(s\) are void", 90)
        assert same(rows_by_name(db)) == same(before)
        assert site.media_count() == media
        assert daemon.stop() == 0
    assert all(r["status"] == Status.DONE for r in before.values())
