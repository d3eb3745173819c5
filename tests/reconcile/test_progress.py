"""The --rescan progress: a bar under a terminal, log lines when piped."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from imgwatch.reconcile.progress import ProgressLog
from tests.imagefiles import write_image
from tests.runner import run


def many_images(image_dir: Path, count: int) -> None:
    first = write_image(image_dir / "a0.jpg")
    for i in range(1, count):
        (image_dir / f"d{i % 7}").mkdir(exist_ok=True)
        (image_dir / f"d{i % 7}" / f"a{i}.jpg").write_bytes(first.read_bytes())


def run_in_terminal(args: list[str], cwd: Path) -> str:
    """imgwatch with a pseudo-terminal (100 columns) as stdout and stderr."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGWATCH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgwatch", *args],
        stdin=subprocess.DEVNULL,
        stdout=side,
        stderr=side,
        cwd=cwd,
        env=env,
    )
    os.close(side)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(main)
    assert proc.returncode == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_a_bar_with_files_bytes_rate_and_eta(
    tmp_path: Path, image_dir: Path
) -> None:
    many_images(image_dir, 600)
    out = run_in_terminal(["--rescan", "--image-dir", str(image_dir)], tmp_path)
    frames = out.replace("\r\n", "\n").split("\r")
    last = [f for f in frames if f.startswith("rescan: 100%|")]
    assert last, out[-2000:]
    final = last[-1]
    assert "600/600" in final  # files done of the total counted first
    assert "file/s" in final  # the rate
    assert "<00:00" in final  # elapsed<remaining: the ETA
    total = sum(p.stat().st_size for p in image_dir.rglob("*.jpg"))
    assert total < 1_000_000
    assert f"600 read, {total / 1000:.1f} kB" in final  # files and bytes read
    assert "rescan: 600 new, 0 changed" in out  # the summary still follows


def test_piped_there_is_no_bar(tmp_path: Path, image_dir: Path) -> None:
    many_images(image_dir, 300)
    result = run("--rescan", "--image-dir", str(image_dir), cwd=tmp_path)
    assert result.returncode == 0
    assert "%|" not in result.stderr and "\r" not in result.stderr + result.stdout
    assert result.stdout.startswith("rescan: 300 new")


def test_log_lines_come_every_interval_with_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    progress = ProgressLog(every=10.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="imgwatch.reconcile.progress")
    progress(256, 0, 0)  # too soon
    now[0] = 110.5
    progress(50_000, 1_200, 350_000_000)
    now[0] = 115.0
    progress(60_000, 1_300, 360_000_000)  # too soon after the last line
    now[0] = 121.0
    progress(100_000, 2_000, 2_500_000_000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "rescan progress: 50,000 files looked at, 1,200 read (350.0 MB), 4,762 files/s",
        "rescan progress: 100,000 files looked at, 2,000 read (2.5 GB), 4,762 files/s",
    ]
