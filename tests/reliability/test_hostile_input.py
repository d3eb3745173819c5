"""Hostile and odd input, dropped into a running daemon and reconciled by --rescan.

Every case must end with a row that says what happened (a rejected row carries
the reason), a clear log line, and the daemon still running.
"""

from __future__ import annotations

import os
import shutil
import socket
import unicodedata
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from imgwatch.files.names import row_name
from imgwatch.model import Status
from tests.daemonproc import DaemonProcess, db_env, rows_by_name, wait_rows
from tests.imagefiles import sha256_of, write_image
from tests.runner import run

RAW_NAME = b"bad-\xff\xfe.jpg"
LONG_NAME = "d" * 200 + "/" + "n" * 60 + ".jpg"
NFC = unicodedata.normalize("NFC", "café.jpg")
NFD = unicodedata.normalize("NFD", "café.jpg")

# file_name -> the status it must end with, and a part of the reason when rejected.
EXPECTED: dict[str, tuple[str, str]] = {
    "page.jpg": (Status.REJECTED, "looks like HTML/XML text"),
    "notes.png": (Status.REJECTED, "looks like text"),
    "cut.jpg": (Status.REJECTED, "truncated JPEG"),
    "cut.png": (Status.REJECTED, "truncated PNG"),
    "empty.gif": (Status.REJECTED, "empty file"),
    "huge.png": (Status.REJECTED, "MiB limit"),
    "bomb.png": (Status.REJECTED, "too large to process safely"),
    "fifo.png": (Status.REJECTED, "not a regular file: a FIFO"),
    "socket.jpg": (Status.REJECTED, "not a regular file: a socket"),
    "out-link.jpg": (Status.REJECTED, "leads outside the image directory"),
    "self-link.jpg": (Status.REJECTED, "Too many levels of symbolic links"),
    "dangling.jpg": (Status.REJECTED, "broken symbolic link"),
    "dir-link.jpg": (Status.REJECTED, "a link to a directory"),
    "x.jpg/inside.png": (Status.DONE, ""),  # a directory named like an image is a directory
    "in-link.jpg": (Status.DONE, ""),
    "with space 'quote' \"dq\" 100%.jpg": (Status.DONE, ""),
    "new\nline.png": (Status.DONE, ""),
    "emoji 🌅.gif": (Status.DONE, ""),
    NFC: (Status.DONE, ""),
    NFD: (Status.DONE, ""),  # another name for the file system, so another row
    row_name(os.fsdecode(RAW_NAME)): (Status.REJECTED, "not valid UTF-8"),
    row_name(LONG_NAME): (Status.REJECTED, "longer than 255 characters"),
}
# root reads files whatever their mode: imgwatch runs without the two capabilities
# that let it (setpriv), so an unreadable file is unreadable to it as to anyone.
if os.geteuid() == 0 and shutil.which("setpriv"):
    WRAPPER: tuple[str, ...] = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
else:
    WRAPPER = ()
if os.geteuid() != 0 or WRAPPER:
    EXPECTED["no-read.jpg"] = (Status.REJECTED, "permission denied")


def drop_everything(image_dir: Path, outside: Path) -> Iterator[socket.socket]:
    """Create every case; yields the socket so it stays bound while looked at."""
    (image_dir / "page.jpg").write_text("<!doctype html><title>404</title>")
    (image_dir / "notes.png").write_text("just some notes\n")
    for name in ("cut.jpg", "cut.png"):
        data = write_image(outside / name, 64, 64).read_bytes()
        (image_dir / name).write_bytes(data[: len(data) // 2])
    (image_dir / "empty.gif").write_bytes(b"")
    write_image(image_dir / "huge.png", 300, 300)  # ~270 KB, over the 0.1 MiB limit set
    bomb = bytearray(write_image(outside / "bomb.png", 10, 10).read_bytes())
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2  # 10 gigapixels declared
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")
    (image_dir / "bomb.png").write_bytes(bytes(bomb))
    os.mkfifo(image_dir / "fifo.png")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(image_dir / "socket.jpg"))
    (image_dir / "out-link.jpg").symlink_to(write_image(outside / "secret.jpg"))
    (image_dir / "self-link.jpg").symlink_to(image_dir / "self-link.jpg")
    (image_dir / "dangling.jpg").symlink_to(image_dir / "nowhere.jpg")
    (image_dir / "dir-link.jpg").symlink_to(image_dir)
    (image_dir / "loop-dir").symlink_to(image_dir)  # must not hang a walk
    write_image(image_dir / "x.jpg" / "inside.png")
    (image_dir / "in-link.jpg").symlink_to(write_image(image_dir / "real" / "target.jpg"))
    for name in ["with space 'quote' \"dq\" 100%.jpg", "new\nline.png", "emoji 🌅.gif", NFC, NFD]:
        write_image(image_dir / name)
    with open(os.path.join(os.fsencode(image_dir), RAW_NAME), "wb") as f:
        f.write(write_image(outside / "raw.jpg").read_bytes())
    write_image(image_dir / LONG_NAME)
    if "no-read.jpg" in EXPECTED:
        write_image(image_dir / "no-read.jpg").chmod(0)
    yield sock


def check_rows(rows: dict[str, dict[str, Any]], image_dir: Path) -> None:
    for name, (status, reason) in EXPECTED.items():
        assert name in rows, f"no row for {name!r}"
        row = rows[name]
        assert row["status"] == status, (name, row["status"], row["last_error"])
        if reason:
            assert reason in (row["last_error"] or ""), (name, row["last_error"])
        else:
            assert row["sha256"] == sha256_of(image_dir / name), name
    extra = set(rows) - set(EXPECTED) - {"real/target.jpg"}
    assert extra == set(), extra  # nothing else: no row for the FIFO's directory, links …


def settled(rows: dict[str, dict[str, Any]]) -> bool:
    return all(
        name in rows and rows[name]["status"] == status for name, (status, _) in EXPECTED.items()
    )


def test_hostile_input_into_the_running_daemon(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    outside = tmp_path / "outside"
    env = {"IMGWATCH_IMAGE_DIR": str(image_dir), "IMGWATCH_MAX_FILE_MB": "0.1", **db_env(db_url)}
    with DaemonProcess(tmp_path / "run", env, wrapper=WRAPPER) as daemon:
        daemon.wait_started()
        sockets = list(drop_everything(image_dir, outside))
        try:
            rows = wait_rows(db_url, settled, timeout=60)
            assert daemon.process.poll() is None
        finally:
            for s in sockets:
                s.close()
        assert daemon.stop() == 0
    check_rows(rows, image_dir)
    log = daemon.log()
    for name, (status, _reason) in EXPECTED.items():
        if status == Status.REJECTED and "#" not in name:
            assert f"rejected {name!r}" in log, name
    assert "rejected 'bad-\\udcff\\udcfe.jpg': file name is not valid UTF-8" in log
    assert "Traceback" not in log


def test_hostile_input_reconciled_by_rescan(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    sockets = list(drop_everything(image_dir, tmp_path / "outside"))
    try:
        env = {
            "IMGWATCH_IMAGE_DIR": str(image_dir),
            "IMGWATCH_MAX_FILE_MB": "0.1",
            **db_env(db_url),
        }
        first = run("--rescan", env=env, wrapper=WRAPPER)
        second = run("--rescan", env=env, wrapper=WRAPPER)
    finally:
        for s in sockets:
            s.close()
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    check_rows(rows_by_name(db_url), image_dir)
    # Settled: nothing is read or rejected again, nothing goes missing. Except an
    # unreadable file: chmod does not change its mtime, so it is tried each time.
    again = 1 if "no-read.jpg" in EXPECTED else 0
    assert "0 new, 0 changed" in second.stdout, second.stdout
    assert f" {again} rejected, 0 missing" in second.stdout, second.stdout
