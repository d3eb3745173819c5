"""imgwatch beside its baselines, measured in one run, printed as one table.

    .venv/bin/python benchmarks/suite.py                 # quick: about a minute
    .venv/bin/python benchmarks/suite.py --scale 10      # the sizes of the goals

Scenarios (sizes at --scale 1; --scale multiplies the file counts):
1. unchanged reconcile of 10,000 recorded files (SQLite) vs a bare scandir+stat walk
2. bulk import of 1,000 new small images into MariaDB vs one insert+commit per file
   (the original service) and vs the floor (hash the bytes + one batched insert)
3. burst: 1,000 files dropped into the running daemon (a directory moved in);
   files/s from the rename until the last row is committed; beside the floor of
   scenario 2. Not minus the quiet period: the files of a directory moved in take
   the fast path (one look 50 ms later), which the quiet period is not part of
4. latency: one file closed -> its row committed, p50/p95 over 50 files (200 at
   --scale 4 and up; a closed file takes the fast path, so no quiet period to
   subtract); beside the floor for one file (stat + hash + insert)
5. WordPress throughput, with --wordpress (starts the test WordPress, slow):
   `imgwatch --rescan` uploading 40 photo-sized JPEGs beside a parallel curl loop
   at the same concurrency (benchmarks/wp_upload.py has more rounds and the
   original service's approach)
6. footprint: peak RSS of the daemon watching 10,000 files in 100 directories and
   its CPU while idle, beside a bare watchdog observer on the same tree
7. memory over time: resident memory of the running daemon after 5,000 files went
   through it and after 10,000 (waves of 1,000, each removed once recorded): the
   footprint run twice as long, to show memory does not grow with files processed

Targets (from the project's goals) are printed beside each figure. Absolute numbers
depend on the machine; the ratios measured side by side are what count.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from sqlalchemy import insert
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.wp_upload import make_jpegs, timed_run  # noqa: E402
from imgwatch.commands.rescan import rescan  # noqa: E402
from imgwatch.config import load_settings  # noqa: E402
from imgwatch.db.schema import images  # noqa: E402
from imgwatch.db.store import ImageStore  # noqa: E402
from tests.daemonproc import DaemonProcess  # noqa: E402
from tests.servers import MariaDB, WordPress  # noqa: E402

QUIET = 0.3
Row = tuple[str, str, str, str, str]  # scenario, imgwatch, baseline, ratio, target


def png(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (i % 256, i // 256 % 256, i // 65536 % 256)).save(out, "PNG")
    return out.getvalue()


def make_tree(root: Path, count: int, per_dir: int, offset: int = 0) -> list[Path]:
    paths = []
    for i in range(count):
        d = root / f"d{i // per_dir:05d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        p = d / f"{offset + i:07d}.png"
        p.write_bytes(png(offset + i))
        paths.append(p)
    return paths


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_walk(root: Path) -> int:
    n, stack = 0, [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    e.stat(follow_symlinks=False)
                    n += 1
    return n


def settings_for(image_dir: Path, url: URL) -> object:
    return load_settings(
        {"image_dir": image_dir, "db_url": url.render_as_string(hide_password=False)}
    )


# --- 1. unchanged reconcile -----------------------------------------------------------


def unchanged_reconcile(work: Path, n: int) -> Row:
    tree = work / "s1"
    make_tree(tree, n, 100)
    url = URL.create("sqlite", database=str(work / "s1.db"))
    settings = settings_for(tree, url)
    rescan(settings)  # type: ignore[arg-type]  # record everything first
    ours = min(timed(lambda: rescan(settings)) for _ in range(3))  # type: ignore[arg-type]
    bare = min(timed(lambda: bare_walk(tree)) for _ in range(3))
    return (
        f"1 unchanged reconcile, {n:,} files",
        f"{ours:.2f} s",
        f"bare walk {bare:.2f} s",
        f"{ours / bare:.1f}x",
        "<= 2x",
    )


# --- 2. bulk import -------------------------------------------------------------------


def bulk_import(work: Path, n: int, server: MariaDB) -> tuple[Row, float]:
    tree = work / "s2"
    paths = make_tree(tree, n, 1000)
    ours = timed(lambda: rescan(settings_for(tree, server.create_database())))  # type: ignore[arg-type]

    def per_file() -> None:
        store = ImageStore(server.create_database())
        store.open()
        with store.engine.connect() as conn:
            for p in paths:  # the original service: one INSERT and COMMIT per file
                conn.execute(
                    insert(images).values(
                        file_name=str(p.relative_to(tree)),
                        title=p.name,
                        description="Image description",
                    )
                )
                conn.commit()
        store.close()

    def floor() -> None:
        store = ImageStore(server.create_database())
        store.open()
        rows = [
            {
                "file_name": str(p.relative_to(tree)),
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                "status": "done",
            }
            for p in paths
        ]
        with store.engine.begin() as conn:
            conn.execute(insert(images), rows)
        store.close()

    original = timed(per_file)
    bottom = timed(floor)
    row = (
        f"2 bulk import into MariaDB, {n:,} files",
        f"{n / ours:,.0f} files/s",
        f"per-file {n / original:,.0f}/s; floor {n / bottom:,.0f}/s",
        f"{original / ours:.1f}x per-file; {ours / bottom:.1f}x floor time",
        ">= 10x per-file; <= 2x floor",
    )
    return row, n / bottom


# --- the daemon as a process -------------------------------------------------------------


class Daemon:
    """The daemon as systemd runs it (default log level), once its startup
    reconcile is over: what the scenarios time starts in a running daemon."""

    def __init__(self, image_dir: Path, db: Path, **settings: str) -> None:
        env = {
            "IMGWATCH_IMAGE_DIR": str(image_dir),
            "IMGWATCH_DB_URL": f"sqlite:///{db}",
            "IMGWATCH_QUIET_PERIOD": str(QUIET),
            **{f"IMGWATCH_{k.upper()}": v for k, v in settings.items()},
        }
        self.db = db
        self.daemon = DaemonProcess(db.parent / f"{db.stem}-daemon", env)
        self.daemon.wait_notified("READY=1", 60)
        self.daemon.wait_log(r"startup reconcile: ", 900)  # records a footprint tree first
        self.proc = self.daemon.process

    def count(self, status: str | None = None) -> int:
        """Rows, or rows with this status."""
        try:
            with sqlite3.connect(self.db, timeout=5) as conn:
                q = "SELECT COUNT(*) FROM images WHERE ? IS NULL OR status = ?"
                return int(conn.execute(q, (status, status)).fetchone()[0])
        except sqlite3.Error:
            return -1

    def has(self, name: str) -> bool:
        with sqlite3.connect(self.db, timeout=5) as conn:
            q = "SELECT 1 FROM images WHERE file_name = ?"
            return conn.execute(q, (name,)).fetchone() is not None

    def wait_rows(
        self, ok: Callable[[int], bool], timeout: float, status: str | None = None
    ) -> float:
        deadline = time.monotonic() + timeout
        while not ok(self.count(status)):
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not get there in time")
            time.sleep(0.005)
        return time.perf_counter()

    def stat(self) -> tuple[int, float]:
        """(peak RSS in KiB, CPU seconds)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        hwm = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return hwm, cpu

    def stop(self) -> None:
        self.daemon.stop()


# --- 3. burst -------------------------------------------------------------------------------


def burst(work: Path, n: int, floor_rate: float) -> Row:
    tree = work / "s3"
    tree.mkdir()
    staging = work / "s3-staging"
    paths = make_tree(staging, n, n)
    daemon = Daemon(tree, work / "s3.db")
    try:
        start = time.perf_counter()
        paths[0].parent.rename(tree / "burst")  # all of them at once
        done = daemon.wait_rows(lambda c: c >= n, 600)
    finally:
        daemon.stop()
    rate = n / (done - start)
    return (
        f"3 burst into the daemon, {n:,} files",
        f"{rate:,.0f} files/s",
        f"floor {floor_rate:,.0f} files/s",
        f"{rate / floor_rate:.2f}x floor",
        ">= 12,000 files/s",
    )


# --- 4. latency -------------------------------------------------------------------------------


def latency(work: Path, samples: int) -> Row:
    tree = work / "s4"
    tree.mkdir()
    daemon = Daemon(tree, work / "s4.db")
    lat = []
    try:
        for i in range(samples):
            data = png(900_000 + i)
            name = f"l{i:04d}.png"
            with open(tree / name, "wb") as f:
                f.write(data)
            closed = time.perf_counter()  # the close is the moment the file is complete
            while not daemon.has(name):
                time.sleep(0.002)
            # Not minus the quiet period: a closed file takes the fast path, which
            # the quiet period is not part of.
            lat.append(time.perf_counter() - closed)
    finally:
        daemon.stop()

    def one_file_floor() -> None:
        p = tree / "l0000.png"
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        with sqlite3.connect(work / "floor.db") as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t (n TEXT, h TEXT, s INT)")
            conn.execute("INSERT INTO t VALUES (?, ?, ?)", (p.name, digest, st.st_size))

    floor = statistics.median(timed(one_file_floor) for _ in range(20))
    lat.sort()
    p50, p95 = statistics.median(lat), lat[int(len(lat) * 0.95) - 1]
    return (
        f"4 latency close -> row, {samples} files",
        f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
        f"floor {floor * 1000:.1f} ms",
        f"p95 {p95 / floor:.0f}x floor",
        "p95 <= 100 ms",
    )


# --- 5. WordPress throughput ----------------------------------------------------------------


def wordpress_throughput(work: Path, server: MariaDB, files: int, workers: int = 4) -> Row:
    site = WordPress(work / "wordpress", server)
    site.start()
    try:
        seconds = {}
        for name in ("curl", "imgwatch"):
            paths = make_jpegs(work / f"s5-{name}", files, 1600, 1200)
            scratch = work / f"s5-{name}-scratch"
            scratch.mkdir()
            seconds[name] = timed_run(name, site, paths, workers, scratch)
    finally:
        site.stop()
    return (
        f"5 WordPress upload, {files} JPEGs 1600x1200",
        f"{files / seconds['imgwatch']:.1f} files/s",
        f"parallel curl (-P {workers}) {files / seconds['curl']:.1f} files/s",
        f"{seconds['curl'] / seconds['imgwatch']:.2f}x curl",
        ">= 0.9x",
    )


# --- 6. footprint -----------------------------------------------------------------------------


def footprint(work: Path, n: int, idle: float) -> Row:
    tree = work / "s6"
    make_tree(tree, n, 100)
    daemon = Daemon(tree, work / "s6.db")
    try:
        daemon.wait_rows(lambda c: c >= n, 600)
        time.sleep(1.0)
        _, cpu0 = daemon.stat()
        time.sleep(idle)
        rss, cpu1 = daemon.stat()
    finally:
        daemon.stop()
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys,time,resource\n"
            "from watchdog.observers import Observer\n"
            "from watchdog.events import FileSystemEventHandler\n"
            "o=Observer();o.schedule(FileSystemEventHandler(),sys.argv[1],recursive=True);"
            "o.start();t0=time.process_time();time.sleep(float(sys.argv[2]));"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,time.process_time()-t0)",
            str(tree),
            str(idle),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    bare_rss, bare_cpu = int(bare[0]), float(bare[1])
    per_min = (cpu1 - cpu0) * 60 / idle
    bare_per_min = bare_cpu * 60 / idle
    return (
        f"6 footprint, {n:,} files in {n // 100:,} dirs",
        f"peak RSS {rss / 1024:.0f} MB; idle CPU {per_min:.2f} s/min",
        f"bare watchdog {bare_rss / 1024:.0f} MB; {bare_per_min:.2f} s/min",
        f"{rss / bare_rss:.1f}x RSS",
        "<= 150 MB; idle <= 0.5 s/min",
    )


# --- 7. memory over time ----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])


def memory_over_time(work: Path, per_wave: int, waves: int) -> Row:
    """Waves of files through the running daemon, each removed once recorded (the
    rows stay, marked missing): resident memory after `waves` waves and after twice
    as many. Bounded queues and caches mean no growth with the files processed."""
    tree = work / "s7"
    tree.mkdir()
    # An inbox: every wave is removed whole, which the mass-deletion guard would hold.
    daemon = Daemon(tree, work / "s7.db", delete_guard_share="1")
    rss: dict[int, int] = {}
    try:
        for wave in range(1, 2 * waves + 1):
            staging = work / f"s7-staging-{wave}"
            make_tree(staging, per_wave, per_wave, offset=wave * per_wave)
            (staging / "d00000").rename(tree / f"wave{wave}")
            expected = wave * per_wave
            daemon.wait_rows(lambda c: c >= expected, 600)  # noqa: B023 - used at once
            shutil.rmtree(tree / f"wave{wave}")
            staging.rmdir()
            # Measured once the deletes are through: every row so far marked missing.
            daemon.wait_rows(lambda c: c >= expected, 600, "missing")  # noqa: B023
            rss[wave] = rss_kib(daemon.proc.pid)
    finally:
        daemon.stop()
    first, half, full = rss[1], rss[waves], rss[2 * waves]
    n = per_wave * waves
    return (
        f"7 memory over time, {n:,} then {2 * n:,} files",
        f"RSS {half / 1024:.0f} MB, then {full / 1024:.0f} MB",
        f"after the first {per_wave:,}: {first / 1024:.0f} MB",
        f"{full / half:.2f}x",
        "no growth (about 1.0x)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the file counts")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle measured")
    parser.add_argument(
        "--wordpress", action="store_true", help="also scenario 5 (starts the test WordPress)"
    )
    args = parser.parse_args()
    s = args.scale
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="imgwatch-bench-") as tmp:
        work = Path(tmp)
        # MariaDB's default durability (a log flush per commit), as in production.
        server = MariaDB(work / "mariadb", durable=True)
        server.start()
        try:
            rows.append(unchanged_reconcile(work, int(10_000 * s)))
            row, floor_rate = bulk_import(work, int(1_000 * s), server)
            rows.append(row)
            rows.append(burst(work, int(1_000 * s), floor_rate))
            rows.append(latency(work, min(200, int(50 * s))))  # 200 at the full size
            if args.wordpress:
                rows.append(wordpress_throughput(work, server, 40))
            else:
                rows.append(("5 WordPress upload", "not run (--wordpress)", "", "", ">= 0.9x"))
            rows.append(footprint(work, int(10_000 * s), args.idle))
            rows.append(memory_over_time(work, int(1_000 * s), 5))
        finally:
            server.stop()
    widths = [max(len(r[i]) for r in [*rows, HEADER]) for i in range(5)]
    for r in [HEADER, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
    cpu = os.cpu_count()
    print(f"\nmachine: {cpu} CPUs, Python {sys.version.split()[0]}, scale {s:g}")


HEADER: Row = ("scenario", "imgwatch", "baseline (same run)", "ratio", "target")

if __name__ == "__main__":
    main()
