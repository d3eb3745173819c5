"""The daemon as a real process: files dropped the way people and tools drop them.

Each test runs `python -m imgwatch` against a real database (SQLite and the test
MariaDB), with a fake systemd notify socket, and checks the rows it leaves.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import URL

from imgwatch.model import Status
from tests.daemonproc import (
    DaemonProcess,
    all_done,
    daemon_env,
    db_env,
    rows_by_name,
    start,
    wait_for,
    wait_rows,
    wp_settings,
)
from tests.imagefiles import sha256_of, write_image
from tests.servers import MariaDB, WordPress


def image_bytes(tmp_path: Path, name: str, size: int = 64) -> bytes:
    return write_image(tmp_path / "src" / name, size, size).read_bytes()


def slow_copy(data: bytes, dest: Path, chunks: int = 5, pause: float = 0.6) -> None:
    """One open file, written in chunks with pauses longer than the quiet period."""
    step = len(data) // chunks + 1
    with open(dest, "wb") as out:
        for i in range(0, len(data), step):
            out.write(data[i : i + step])
            out.flush()
            os.fsync(out.fileno())
            time.sleep(pause)


def test_files_dropped_as_people_do_are_recorded_once_and_complete(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    write_image(image_dir / "before.jpg")  # there before the daemon starts
    with start(tmp_path, image_dir, db_url) as daemon:
        # A slow copy: recorded once, after the last chunk, not at the first pause.
        slow_copy(image_bytes(tmp_path, "slow.jpg", 256), image_dir / "slow.jpg")
        # A download written under a temporary name, then renamed into place.
        (image_dir / "dl.png.part").write_bytes(image_bytes(tmp_path, "dl.png"))
        (image_dir / "dl.png.part").rename(image_dir / "dl.png")
        # rsync's hidden temp name, renamed over.
        (image_dir / ".rs.gif.Xy12Zq").write_bytes(image_bytes(tmp_path, "rs.gif"))
        (image_dir / ".rs.gif.Xy12Zq").rename(image_dir / "rs.gif")
        # New nested directories with a file written at once (before any watch on them).
        nested = image_dir / "2026" / "11" / "25"
        nested.mkdir(parents=True)
        write_image(nested / "deep.jpg")
        # A burst.
        burst = {f"burst/{i:03d}.jpg" for i in range(150)}
        for name in sorted(burst):
            write_image(image_dir / name, 16, 16)
        expected = {"before.jpg", "slow.jpg", "dl.png", "rs.gif", "2026/11/25/deep.jpg"} | burst
        rows = wait_rows(db_url, all_done(expected))
        assert daemon.stop() == 0
    assert set(rows) == expected  # no temp names, nothing twice
    for name in expected:
        assert rows[name]["sha256"] == sha256_of(image_dir / name), name  # complete
    log = daemon.log()
    for name in expected - {"before.jpg"}:
        assert log.count(f"recorded {name!r}") == 1, name
    assert "recorded 'slow.jpg'" in log


def test_files_arriving_during_the_startup_reconcile_are_read_once(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    before = {f"old/{i:04d}.jpg" for i in range(1500)}
    for name in sorted(before):
        write_image(image_dir / name, 24, 24)
    with DaemonProcess(tmp_path / "run", daemon_env(image_dir, db_url)) as daemon:
        daemon.wait_notified("READY=1")  # watching; the startup reconcile is under way
        during = {f"{d}/{i:04d}.jpg" for d in ("old", "new") for i in range(1500, 1550)}
        for name in sorted(during):
            write_image(image_dir / name, 24, 24)
        rows = wait_rows(db_url, all_done(before | during))
        daemon.wait_log(r"startup reconcile: ")
        assert daemon.stop() == 0
    assert set(rows) == before | during
    log = daemon.log()
    twice = [n for n in before | during if log.count(f"recorded {n!r}") != 1]
    assert twice == []


def test_moves_keep_the_row_and_deletes_mark_it_missing(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB
) -> None:
    db = mariadb.create_database()
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "album" / "b.jpg")
    write_image(image_dir / "gone.jpg")
    with start(tmp_path, image_dir, db) as daemon:
        before = rows_by_name(db)
        (image_dir / "a.jpg").rename(image_dir / "album" / "a.jpg")
        (image_dir / "album").rename(image_dir / "2026-album")
        (image_dir / "gone.jpg").unlink()
        rows = wait_rows(
            db,
            lambda r: (
                {"2026-album/a.jpg", "2026-album/b.jpg"} <= set(r)
                and r.get("gone.jpg", {}).get("status") == Status.MISSING
            ),
        )
        assert daemon.stop() == 0
    # Same rows (ids), new names; nothing was read again.
    assert rows["2026-album/a.jpg"]["id"] == before["a.jpg"]["id"]
    assert rows["2026-album/b.jpg"]["id"] == before["album/b.jpg"]["id"]
    assert set(rows) == {"2026-album/a.jpg", "2026-album/b.jpg", "gone.jpg"}
    assert daemon.log_count(r"recorded '2026-album/") == 0


def test_delete_policy_forget_removes_the_row(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    write_image(image_dir / "keep.jpg")
    write_image(image_dir / "drop.jpg")
    with start(tmp_path, image_dir, db_url, on_delete="forget") as daemon:
        (image_dir / "drop.jpg").unlink()
        wait_rows(db_url, lambda r: set(r) == {"keep.jpg"})
        assert daemon.stop() == 0
    assert "forgot 'drop.jpg'" in daemon.log()


def test_editor_save_that_replaces_the_file_is_a_change_not_a_delete(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    write_image(image_dir / "edit.jpg")
    with start(tmp_path, image_dir, db_url, on_delete="forget") as daemon:
        first = rows_by_name(db_url)["edit.jpg"]
        # What editors do: write a new file, delete the old one, rename the new one in.
        write_image(image_dir / ".edit.jpg.swp", 40, 40)
        (image_dir / "edit.jpg").unlink()
        (image_dir / ".edit.jpg.swp").rename(image_dir / "edit.jpg")
        rows = wait_rows(db_url, lambda r: r.get("edit.jpg", {}).get("width") == 40)
        assert daemon.stop() == 0
    assert rows["edit.jpg"]["id"] == first["id"]
    assert rows["edit.jpg"]["sha256"] == sha256_of(image_dir / "edit.jpg")


def test_a_slow_rewrite_in_place_ends_with_the_complete_file(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    # No create event announces a writer here (opens are not watched), so a pause
    # longer than the quiet period may get the half-written file read and rejected as
    # truncated; its close brings the complete file in.
    write_image(image_dir / "over.jpg", 32, 32)
    with start(tmp_path, image_dir, db_url) as daemon:
        new = image_bytes(tmp_path, "over.jpg", 256)
        slow_copy(new, image_dir / "over.jpg")
        rows = wait_rows(db_url, lambda r: r["over.jpg"]["width"] == 256)
        assert daemon.stop() == 0
    row = rows["over.jpg"]
    assert (row["status"], row["sha256"]) == (Status.DONE, sha256_of(image_dir / "over.jpg"))


def test_notify_protocol_and_sigterm(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    env = daemon_env(image_dir, db_url)
    env["WATCHDOG_USEC"] = "400000"  # WatchdogSec=0.4s: a ping every 0.2s
    with DaemonProcess(tmp_path / "run", env) as daemon:
        daemon.wait_notified("READY=1")
        daemon.wait_notified("WATCHDOG=1")
        write_image(image_dir / "x.jpg")
        wait_rows(db_url, all_done({"x.jpg"}))
        wait_for(
            lambda: any("1 recorded," in m for m in daemon.all_messages()),
            10,
            "a STATUS= line counting the file",
        )
        assert all(
            line.startswith(("READY=1", "STATUS=watching ", "WATCHDOG=1"))
            for m in daemon.messages
            for line in m.splitlines()
        ), daemon.messages
        assert daemon.stop() == 0
        assert daemon.notified("STOPPING=1")
    assert "received SIGTERM, stopping" in daemon.log()
    assert "Traceback" not in daemon.log()


def test_sigterm_during_a_burst_loses_nothing(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    names = {f"{i:03d}.png" for i in range(300)}
    with start(tmp_path, image_dir, db_url) as daemon:
        for name in sorted(names):
            write_image(image_dir / name, 16, 16)
        time.sleep(0.5)
        assert daemon.stop() == 0  # mid-burst: some recorded, some not yet
    # Whatever was not recorded is found by the next start's reconcile, once.
    with start(tmp_path, image_dir, db_url) as again:
        rows = wait_rows(db_url, all_done(names))
        assert again.stop() == 0
    assert set(rows) == names
    recorded = daemon.log().count("recorded '") + again.log().count("recorded '")
    assert recorded == len(names)


def test_polling_mode_sees_new_files(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    with start(tmp_path, image_dir, db_url, watch_mode="polling", poll_interval="0.3") as daemon:
        write_image(image_dir / "sub" / "polled.jpg")
        wait_rows(db_url, all_done({"sub/polled.jpg"}))
        assert daemon.stop() == 0


def test_a_full_queue_drops_changes_and_reconciles(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    names = {f"d{i % 7}/{i:03d}.jpg" for i in range(200)}
    # max_wait far beyond the wait below: a file left waiting for a dropped close fails.
    with start(tmp_path, image_dir, db_url, queue_size="10", max_wait="600") as daemon:
        for name in sorted(names):
            write_image(image_dir / name, 8, 8)
        rows = wait_rows(db_url, all_done(names))
        daemon.wait_log(r"file events were lost \(queue overflow\); reconciling")
        assert daemon.stop() == 0
    assert set(rows) == names


def test_rejected_files_are_recorded_with_a_reason_and_the_daemon_goes_on(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    with start(tmp_path, image_dir, db_url) as daemon:
        (image_dir / "notes.jpg").write_text("<html>not an image</html>")
        write_image(image_dir / "fine.png")
        rows = wait_rows(db_url, lambda r: {"notes.jpg", "fine.png"} <= set(r))
        rows = wait_rows(db_url, all_done({"fine.png"}))
        assert daemon.stop() == 0
    assert rows["notes.jpg"]["status"] == "rejected"
    assert rows["notes.jpg"]["last_error"]
    assert "rejected 'notes.jpg'" in daemon.log()


def test_missing_image_dir_is_a_configuration_error(tmp_path: Path, db_url: URL) -> None:
    env = {"IMGWATCH_IMAGE_DIR": str(tmp_path / "nope"), **db_env(db_url)}
    daemon = DaemonProcess(tmp_path / "run", env)
    try:
        code = daemon.process.wait(60)
    finally:
        daemon.close()
    assert code == 78
    assert "does not exist" in daemon.log()
    assert not daemon.notified("READY=1")


def test_moved_in_directory_tree_is_scanned(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    outside = tmp_path / "outside"
    for i in range(5):
        write_image(outside / "a" / "b" / f"{i}.jpg")
    with start(tmp_path, image_dir, db_url) as daemon:
        shutil.move(str(outside), str(image_dir / "import"))
        wait_rows(db_url, all_done({f"import/a/b/{i}.jpg" for i in range(5)}))
        assert daemon.stop() == 0


def test_a_file_written_after_its_directory_moved_in_is_recorded_as_it_ends(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    # A directory moved in is read whole; a write to one of its files after it
    # arrived is seen too, whether before or after that reading got to the file.
    outside = tmp_path / "outside"
    names = {f"card/{i:03d}.jpg" for i in range(300)}
    for name in names:
        write_image(tmp_path / "outside" / name)
    with start(tmp_path, image_dir, db_url) as daemon:
        shutil.move(str(outside / "card"), str(image_dir / "card"))
        write_image(image_dir / "card" / "150.jpg")  # new content, at once
        final = sha256_of(image_dir / "card" / "150.jpg")
        rows = wait_rows(
            db_url,
            lambda r: all_done(names)(r) and r["card/150.jpg"]["sha256"] == final,
        )
        assert daemon.stop() == 0
    assert set(rows) == names
    assert all(rows[n]["sha256"] == sha256_of(image_dir / n) for n in names)
    assert "Traceback" not in daemon.log()


# --- with the real WordPress -------------------------------------------------------


def test_daemon_uploads_dropped_files_once_and_moves_do_not_reupload(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    write_image(image_dir / "before.jpg")
    media_before = site.media_count()
    with start(tmp_path, image_dir, db, **wp_settings(site)) as daemon:
        write_image(image_dir / "new.png")
        rows = wait_rows(db, lambda r: all(x.get("wp_url") for x in r.values()) and len(r) == 2)
        assert site.media_count() == media_before + 2
        for name, row in rows.items():
            served = requests.get(str(row["wp_url"]), timeout=30).content
            assert (
                hashlib.sha256(served).hexdigest() == row["sha256"] == sha256_of(image_dir / name)
            )
        (image_dir / "new.png").rename(image_dir / "renamed.png")
        moved = wait_rows(db, lambda r: "renamed.png" in r)
        assert daemon.stop() == 0
    assert moved["renamed.png"]["wp_url"] == rows["new.png"]["wp_url"]
    assert moved["renamed.png"]["status"] == Status.DONE
    assert site.media_count() == media_before + 2  # the move uploaded nothing
    assert " in WordPress (media " not in daemon.log()  # and updated no words
    assert "Traceback" not in daemon.log()


def test_a_directory_moved_out_and_back_in_is_not_uploaded_again(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    names = {f"album/{i}.jpg" for i in range(3)}
    # Beside it, a file that stays: a tree left empty holds its deletions.
    for name in names | {"stays.jpg"}:
        write_image(image_dir / name)
    with start(tmp_path, image_dir, db, **wp_settings(site)) as daemon:
        rows = wait_rows(db, lambda r: all(x.get("wp_url") for x in r.values()) and len(r) == 4)
        media_before = site.media_count()
        # Out of the tree (its rows go missing, their media stay), then back whole.
        (image_dir / "album").rename(tmp_path / "album")
        wait_rows(db, lambda r: all(r[n]["status"] == Status.MISSING for n in names))
        (tmp_path / "album").rename(image_dir / "album")
        back = wait_rows(db, all_done(names))
        assert daemon.stop() == 0
    assert {n: r["wp_url"] for n, r in back.items()} == {n: r["wp_url"] for n, r in rows.items()}
    assert site.media_count() == media_before  # nothing uploaded again
    assert "Traceback" not in daemon.log()


def test_purge_policy_deletes_the_media_too(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    write_image(image_dir / "short-lived.jpg")
    write_image(image_dir / "stays.jpg")  # a tree left empty would be held (the guard)
    with start(tmp_path, image_dir, db, on_delete="purge", **wp_settings(site)) as daemon:
        # Both uploaded before counting: an upload of stays.jpg after the count would
        # make up for the purge, and the count would never drop.
        row = wait_rows(db, lambda r: len(r) == 2 and all(x.get("wp_url") for x in r.values()))[
            "short-lived.jpg"
        ]
        count = site.media_count()
        (image_dir / "short-lived.jpg").unlink()
        wait_rows(db, lambda r: set(r) == {"stays.jpg"})
        wait_for(lambda: site.media_count() == count - 1, 30, "the media item deleted")
        assert daemon.stop() == 0
    assert f"deleted media {row['wp_media_id']} of 'short-lived.jpg'" in daemon.log()


def test_wordpress_down_at_start_does_not_stop_the_daemon(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    site = live_wordpress
    site.halt()
    try:
        with start(tmp_path, image_dir, db, wp_probe_max="1", **wp_settings(site)) as daemon:
            write_image(image_dir / "waits.jpg")
            wait_rows(db, lambda r: r.get("waits.jpg", {}).get("status") == Status.PENDING)
            daemon.wait_log(r"uploads paused: cannot connect to WordPress")
            site.serve()
            # No SIGHUP, no retry: the probe finds the site back and uploads resume.
            rows = wait_rows(db, lambda r: r.get("waits.jpg", {}).get("status") == Status.DONE)
            assert daemon.stop() == 0
    finally:
        if site.process is None or site.process.poll() is not None:
            site.serve()
    assert rows["waits.jpg"]["wp_url"]
    assert rows["waits.jpg"]["attempts"] == 0  # the site was down, the file never failed
    assert daemon.log_count("uploads paused: ") == 1
    assert "WordPress answers properly again after" in daemon.log()


# --- fast unit tests -------------------------------------------------------------------


def test_a_second_stop_signal_exits_at_once(
    tmp_path: Path, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgwatch.config import load_settings
    from imgwatch.daemon.app import Daemon

    settings = load_settings({"image_dir": image_dir, "db_url": f"sqlite:///{tmp_path / 'x.db'}"})
    daemon = Daemon(settings)

    def fake_exit(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr("imgwatch.daemon.app.os._exit", fake_exit)
    daemon._on_stop_signal(signal.SIGTERM, None)  # first: ask the loop to stop
    assert daemon._signal == signal.SIGTERM
    with pytest.raises(SystemExit) as exited:
        daemon._on_stop_signal(signal.SIGINT, None)  # second: now
    assert exited.value.code == 128 + signal.SIGINT


WATCH_LIMIT = Path("/proc/sys/fs/inotify/max_user_watches")


def inotify_watches_in_use() -> int:
    """Watches held by this user's processes now (the kernel counts per user)."""
    total = 0
    for fdinfo in Path("/proc").glob("[0-9]*/fdinfo/*"):
        try:
            if fdinfo.parent.parent.stat().st_uid != os.geteuid():
                continue
            total += fdinfo.read_text().count("inotify wd:")
        except OSError:
            continue  # the process or fd went away meanwhile
    return total


def test_running_out_of_inotify_watches_exits_78_naming_the_sysctl(
    tmp_path: Path, image_dir: Path
) -> None:
    if not os.access(WATCH_LIMIT, os.W_OK):
        pytest.skip("lowering fs.inotify.max_user_watches needs root and a writable /proc/sys")
    for i in range(200):  # one watch per directory
        (image_dir / f"d{i:03d}").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMGWATCH_")},
        "IMGWATCH_IMAGE_DIR": str(image_dir),
        "IMGWATCH_DB_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    original = WATCH_LIMIT.read_text()
    # Room for what is in use plus a few: the daemon's tree needs 201.
    WATCH_LIMIT.write_text(str(inotify_watches_in_use() + 20))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "imgwatch"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        WATCH_LIMIT.write_text(original)
    assert result.returncode == 78, result.stderr
    assert "out of inotify watches" in result.stderr
    assert "fs.inotify.max_user_watches" in result.stderr
    assert "Traceback" not in result.stderr


def test_running_out_of_watches_while_running_is_reported(tmp_path: Path, image_dir: Path) -> None:
    if not os.access(WATCH_LIMIT, os.W_OK):
        pytest.skip("lowering fs.inotify.max_user_watches needs root and a writable /proc/sys")
    db = URL.create("sqlite", database=str(tmp_path / "x.db"))
    with start(tmp_path, image_dir, db) as daemon:
        original = WATCH_LIMIT.read_text()
        WATCH_LIMIT.write_text(str(inotify_watches_in_use() + 2))
        try:
            for i in range(6):
                (image_dir / f"new{i}").mkdir()
            daemon.wait_log(r"out of inotify watches: new directories are not watched", 10)
        finally:
            WATCH_LIMIT.write_text(original)
        assert daemon.process.poll() is None  # still running, degraded, and says so
        assert daemon.stop() == 0
    assert daemon.log_count("out of inotify watches") == 1
