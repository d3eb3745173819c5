"""Photo-sized files: MB/s through `--rescan` and through the daemon, beside
`sha256sum` of the same files run as 2 parallel processes (the floor of reading
and hashing them), in one run, one table.

    .venv/bin/python benchmarks/photos.py                     # 1,000 files of 3-6 MB
    .venv/bin/python benchmarks/photos.py --files 200         # quicker
    .venv/bin/python benchmarks/photos.py --files 100,1000,3000   # how cost grows

Each size is a run of its own (new files, new databases); the table gives, per
size and path, the time per photo, MB/s, and the peak RSS: the rescan's largest
process (wait4's ru_maxrss, its reading processes included), the daemon's main
process (VmHWM, once every photo is recorded).

The files are real camera-sized JPEGs: a few distinct 4000x3000 photos of noise
(large, since noise does not compress), each copy made distinct by a comment
segment, so every file has its own hash. Beside sha256sum, the same work with
Python's hashlib (OpenSSL's SHA-256, which imgwatch uses and which may be
faster than coreutils' on CPUs with SHA instructions) in 2 processes. All runs
read from the page cache (the files are read once before anything is timed):
what is compared is the work per byte, not the disk. SQLite. The goal: imgwatch
at least 0.8x the sha256sum floor.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.growth import rescan as rescan_process  # noqa: E402
from benchmarks.growth import status_kib  # noqa: E402
from tests.daemonproc import DaemonProcess  # noqa: E402

DISTINCT = 12  # distinct photos; the rest are copies with their own comment


def photo(seed: int) -> bytes:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    # Smoothed noise: a JPEG of 3-5 MB at 4000x3000, as a camera's would be.
    block = rng.choice([4, 5, 6, 8])
    width, height = 4000 // block, 3000 // block
    small = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    small.resize((4000, 3000), Image.Resampling.BILINEAR).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_photos(staging: Path, count: int) -> int:
    """count JPEGs under staging/photos; their total size in bytes."""
    target = staging / "photos"
    target.mkdir(parents=True)
    bases = [photo(i) for i in range(DISTINCT)]
    total = 0
    for i in range(count):
        base = bases[i % DISTINCT]
        comment = b"imgwatch benchmark photo %06d" % i
        com = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        data = base[:2] + com + base[2:]
        (target / f"IMG_{i:05d}.JPG").write_bytes(data)
        total += len(data)
    return total


def warm(directory: Path) -> None:
    for path in directory.rglob("*.JPG"):
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def sha256sum_floor(directory: Path) -> float:
    files = sorted(str(p) for p in directory.rglob("*.JPG"))
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-0", "-P", "2", "-n", str(max(1, len(files) // 2 + 1)), "sha256sum"],
        input="\0".join(files).encode(),
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


HASHLIB_FLOOR = """
import hashlib, sys
from concurrent.futures import ProcessPoolExecutor

def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

if __name__ == "__main__":
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(digest, sys.argv[1:], chunksize=8))
"""


def hashlib_floor(directory: Path) -> float:
    """The same with Python's hashlib (OpenSSL's SHA-256, as imgwatch uses), 2 processes."""
    files = sorted(str(p) for p in directory.rglob("*.JPG"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", HASHLIB_FLOOR, *files], check=True)
    return time.perf_counter() - start


def env_for(tree: Path, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGWATCH_")}
    env.update(
        IMGWATCH_IMAGE_DIR=str(tree),
        IMGWATCH_DB_URL=f"sqlite:///{db}",
        IMGWATCH_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def rescan(tree: Path, db: Path) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one `imgwatch --rescan`."""
    return rescan_process(tree, f"sqlite:///{db}")


def rows(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(
                conn.execute("SELECT COUNT(*) FROM images WHERE status='done'").fetchone()[0]
            )
    except sqlite3.Error:
        return -1


def daemon(staging: Path, tree: Path, db: Path, count: int, work: Path) -> tuple[float, int]:
    """Seconds from the directory moved in to its last row committed (its files take
    the fast path, not the quiet period); and the daemon's peak RSS (KiB) then."""
    env = env_for(tree, db)
    env["IMGWATCH_LOG_LEVEL"] = "INFO"
    quiet = 0.3
    env["IMGWATCH_QUIET_PERIOD"] = str(quiet)
    proc = DaemonProcess(work / "daemon", env)
    try:
        proc.wait_notified("READY=1", 60)
        proc.wait_log(r"startup reconcile: ", 300)
        start = time.perf_counter()
        (staging / "photos").rename(tree / "photos")
        deadline = time.monotonic() + 1800
        while rows(db) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not record every photo in time")
            time.sleep(0.02)
        took = time.perf_counter() - start
        return took, status_kib(proc.process.pid, "VmHWM:")
    finally:
        proc.stop()


@dataclass
class SizeRun:
    """One size's figures."""

    files: int
    mb: float
    floor: float  # sha256sum, 2 processes: MB/s
    hashlib: float  # hashlib, 2 processes: MB/s
    paths: list[tuple[str, float, int]]  # (path, seconds, peak RSS KiB)


def run_size(count: int, work: Path) -> SizeRun:
    staging, tree = work / "staging", work / "tree"
    tree.mkdir()
    total = make_photos(staging, count)
    mb = total / 1e6
    print(f"{count:,} photos, {mb:,.0f} MB ({mb / count:.1f} MB each)", flush=True)
    warm(staging)
    floor = sha256sum_floor(staging)
    # The daemon first: the directory moves into the watched tree...
    through_daemon, daemon_kib = daemon(staging, tree, work / "daemon.db", count, work)
    warm(tree)
    # ... and the rescan then records the same files into a database of its own.
    through_rescan, rescan_kib = rescan(tree, work / "rescan.db")
    floor_again = sha256sum_floor(tree / "photos")
    hashlib_time = hashlib_floor(tree / "photos")
    return SizeRun(
        count,
        mb,
        mb / min(floor, floor_again),
        mb / hashlib_time,
        [
            ("imgwatch --rescan", through_rescan, rescan_kib),
            ("the daemon", through_daemon, daemon_kib),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", default="1000", help="photos; comma-separated to sweep")
    parser.add_argument("--work", type=Path, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    runs: list[SizeRun] = []
    for count in (int(x) for x in args.files.split(",")):
        work = (args.work or Path(tempfile.mkdtemp(prefix="imgwatch-photos-"))) / f"{count}"
        work.mkdir(parents=True, exist_ok=True)
        try:
            runs.append(run_size(count, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        "| photos | path | per photo | MB/s | floor: sha256sum, 2 processes | ratio "
        "| Python hashlib, 2 processes | ratio | peak RSS | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        for label, seconds, kib in run.paths:
            rate = run.mb / seconds
            print(
                f"| {run.files:,} | {label} | {seconds / run.files * 1e3:.1f} ms "
                f"| {rate:,.0f} MB/s | {run.floor:,.0f} MB/s | {rate / run.floor:.2f}x "
                f"| {run.hashlib:,.0f} MB/s | {rate / run.hashlib:.2f}x | {kib / 1024:.0f} MB "
                "| >= 0.8x sha256sum |"
            )


if __name__ == "__main__":
    main()
