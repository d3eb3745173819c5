"""How cost grows with the tree: whole processes at several sizes, two tables.

    .venv/bin/python benchmarks/growth.py                       # 10k and 100k files
    .venv/bin/python benchmarks/growth.py --sizes 10k,100k,1M   # the goals' sizes
    .venv/bin/python benchmarks/growth.py --sizes 3M --work /big/disk --keep

For each size N: a tree of N small real JPEGs in directories of 1,000, then, each
as its own process the way a user runs it,
- the first `imgwatch --rescan` (every file read and recorded),
- an unchanged `imgwatch --rescan`, beside a bare scandir+stat walk of the same
  tree in a Python process of its own (the floor: what any reconcile must do),
  taken in turns --rounds times (3): the medians, and the ratio's median and
  range over the rounds,
- one daemon on the recorded tree (SQLite, inotify, a copy of the rescans'
  database, so every run starts from the N recorded rows), measured in turn:
  - its peak RSS once its startup reconcile is over;
  - idle: its RSS and CPU seconds per minute over the next --settle seconds;
  - latency: 50 small files written one at a time into the watched tree, each
    from its close to its row in the database, p50 and p95;
  - burst: N more files, made beforehand in the same layout in a staging
    directory beside the tree, moved in with one directory rename; the time from
    the rename until the database holds all 2N rows (as benchmarks/suite.py
    measures it), as files/s and us/file; then its peak RSS again.
    Kept work dirs keep the staging tree too (--no-burst skips it).
SQLite by default; --mariadb also runs both rescans against the test MariaDB, with
room for the table in its cache (--buffer-pool, 1G), as a production server has.
Photo-sized files are swept by benchmarks/photos.py (--files 100,1000,3000).

Peak RSS is the largest process's (wait4's ru_maxrss, or the daemon's VmHWM: its
main process, not the reading processes a burst starts). A daemon that dies, hangs
or never gets there is reported in its table cell (and its log's warnings and
errors under the table) and the sweep goes on. The goals:
- the daemon's peak RSS at most 150 MB at 1,000,000 files, and flat (within 10%)
  across sizes; a burst of 10,000 files at 12,000 files/s or more; idle at most
  0.5 s of CPU per minute; latency p95 at most 100 ms;
- the unchanged rescan at most 1.5x the bare walk at 1,000,000 files.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.suite import QUIET  # noqa: E402
from benchmarks.suite import Daemon as SuiteDaemon  # noqa: E402
from tests.daemonproc import DaemonProcess, wait_for  # noqa: E402
from tests.servers import MariaDB  # noqa: E402

PER_DIR = 1000
CODE = ROOT  # the imgwatch source the processes run (--code: another checkout, to compare)

LATENCY_FILES = 50
LATENCY_DIR = "latency"  # in the watched tree while the daemon runs, then removed
BURST_DIR = "burst"  # what the staging tree is renamed to inside the watched tree
STARTUP_TIMEOUT = 3600.0
ROW_TIMEOUT = 10.0  # for one latency file
STALL = 180.0  # a burst with no new row for this long is over
LOG_LINES = 20  # of the daemon's warnings and errors, printed under the table

BARE_WALK = """
import os, sys
n, stack = 0, [sys.argv[1]]
while stack:
    with os.scandir(stack.pop()) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                e.stat(follow_symlinks=False)
                n += 1
print(n)
"""


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


@functools.cache
def _base_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def jpeg(i: int) -> bytes:
    """A small JPEG whose bytes are its own (counter i in a comment segment)."""
    base = _base_jpeg()
    comment = b"imgwatch benchmark %09d" % i
    com = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return base[:2] + com + base[2:]  # after the SOI marker


def make_tree(root: Path, count: int, offset: int = 0) -> None:
    """count small JPEGs, numbered from offset: a burst's files are new files, not
    copies of recorded ones under other names."""
    marker = root / ".complete"
    # Offset 0 keeps the marker of trees kept by earlier versions of this script.
    made = str(count) if offset == 0 else f"{count} from {offset}"
    if marker.exists() and marker.read_text() == made:
        return
    shutil.rmtree(root, ignore_errors=True)
    for i in range(count):
        d = root / f"d{i // PER_DIR:05d}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        (d / f"{offset + i:08d}.jpg").write_bytes(jpeg(offset + i))
    marker.write_text(made)


def tree_dir(work: Path, n: int) -> Path:
    return work / f"tree-{n}"


def staging_dir(work: Path, n: int) -> Path:
    return work / f"staging-{n}"


def put_back(work: Path, n: int) -> None:
    """Undo what the daemon's figures add to the tree (also after an interrupted
    run): the recorded tree is n files again, and the staging tree is whole."""
    tree, staging = tree_dir(work, n), staging_dir(work, n)
    shutil.rmtree(tree / LATENCY_DIR, ignore_errors=True)
    moved = tree / BURST_DIR
    if moved.exists():
        if staging.exists():
            shutil.rmtree(moved)
        else:
            moved.rename(staging)


# Starts a command and prints its peak RSS (with its children's) on stderr. A
# process's ru_maxrss also counts the peak of the memory it replaced at execve,
# and subprocess forks (vforks) the caller: measured straight from here, a rescan
# started once this process had grown (a million-file staging tree made, a
# daemon's log read) showed this process's peak, not its own.
PEAK_OF = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(f"peak-rss-kib {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one whole process."""
    start = time.perf_counter()
    # Run from the checkout measured: `-m imgwatch` imports from the working directory first.
    proc = subprocess.Popen(
        [sys.executable, "-c", PEAK_OF, *argv],
        env=env,
        cwd=CODE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    err = proc.stderr.read().decode() if proc.stderr else ""
    returncode = proc.wait()
    elapsed = time.perf_counter() - start
    if returncode != 0:
        raise RuntimeError(f"{argv} exited {returncode}: {err[-2000:]}")
    peak = next(line for line in reversed(err.splitlines()) if line.startswith("peak-rss-kib "))
    return elapsed, int(peak.split()[1])


def rescan_env(tree: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGWATCH_")}
    env.update(
        IMGWATCH_IMAGE_DIR=str(tree),
        IMGWATCH_DB_URL=db_url,
        IMGWATCH_LOG_LEVEL="WARNING",
        PYTHONPATH=str(CODE),
    )
    return env


def rescan(tree: Path, db_url: str) -> tuple[float, int]:
    return run([sys.executable, "-m", "imgwatch", "--rescan"], rescan_env(tree, db_url))


def bare_walk(tree: Path) -> tuple[float, int]:
    return run([sys.executable, "-c", BARE_WALK, str(tree)], dict(os.environ))


def status_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith(field)).split()[1])


def copy_db(source: Path, dest: Path) -> None:
    """dest: a copy of the SQLite database source (the backup API: WAL included)."""
    remove_db(dest)
    with sqlite3.connect(source) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


# --- the daemon at one size -------------------------------------------------------------


class DaemonFailed(Exception):
    """The daemon did not get there: the message goes in the table."""


class SweepDaemon(SuiteDaemon):
    """suite.py's Daemon (its row counts and /proc figures), started differently: it
    runs the --code checkout (PYTHONPATH in env), and waiting for its startup is the
    caller's, since a tree of millions takes longer than suite.py's timeouts and a
    daemon that dies on the way is a figure here, not an error."""

    def __init__(self, db: Path, workdir: Path, env: dict[str, str]) -> None:
        self.db = db
        self.daemon = DaemonProcess(workdir, env)
        self.proc = self.daemon.process

    def alive(self, during: str) -> None:
        code = self.proc.poll()
        if code is not None:
            raise DaemonFailed(f"the daemon exited ({code}) {during}")

    def burst_rows(self) -> int:
        """Rows under the burst directory: an index range, not a count of all 2N."""
        try:
            with sqlite3.connect(self.db, timeout=5) as conn:
                q = "SELECT COUNT(*) FROM images WHERE file_name >= ? AND file_name < ?"
                return int(conn.execute(q, (f"{BURST_DIR}/", f"{BURST_DIR}0")).fetchone()[0])
        except sqlite3.Error:
            return -1

    def wait_started(self, timeout: float) -> None:
        def reconciled() -> bool:
            self.alive("before its startup reconcile was over")
            log = self.daemon.log()
            failed = re.search(r"^.*startup reconcile (failed|not done).*$", log, re.MULTILINE)
            if failed:
                raise DaemonFailed(failed.group(0))
            return "startup reconcile: " in log and self.daemon.notified("READY=1")

        try:
            wait_for(reconciled, timeout, "the startup reconcile")
        except AssertionError:
            raise DaemonFailed(f"no startup reconcile in {timeout:.0f} s") from None


@dataclass
class DaemonFigures:
    """One size's daemon figures, in the table's order; None: not measured."""

    n: int
    burst_run: bool
    startup_peak: int | None = None  # KiB
    idle_rss: int | None = None  # KiB
    idle_cpu: float | None = None  # CPU seconds per minute
    latency: tuple[float, float] | None = None  # p50, p95 in seconds
    burst: float | None = None  # seconds, from the rename to the last row
    burst_peak: int | None = None  # KiB
    failed: str | None = None  # said in the cell of the first figure not measured
    log: list[str] = field(default_factory=list)  # what its log says, in short

    def cells(self) -> tuple[str, ...]:
        lat = self.latency
        burst = self.burst
        values = [
            None if self.startup_peak is None else mb(self.startup_peak),
            None if self.idle_rss is None else mb(self.idle_rss),
            None if self.idle_cpu is None else f"{self.idle_cpu:.2f} s/min",
            None if lat is None else f"{lat[0] * 1000:.0f} / {lat[1] * 1000:.0f} ms",
            None
            if burst is None
            else f"{self.n / burst:,.0f} files/s ({burst / self.n * 1e6:.1f} us/file)",
            None if self.burst_peak is None else mb(self.burst_peak),
        ]
        if not self.burst_run:
            values[4:] = ["not run (--no-burst)"] * 2
        failure = self.failed
        out = []
        for value in values:
            if value is None and failure is not None:
                value, failure = failure, None
            out.append("-" if value is None else value)
        return tuple(out)


def idle(daemon: SweepDaemon, figures: DaemonFigures, settle: float) -> None:
    # The second after the startup reconcile is left out: its last commit and
    # the collection of its garbage are not idling.
    time.sleep(1.0)
    daemon.alive("after its startup reconcile")
    _, cpu0 = daemon.stat()
    time.sleep(settle)
    daemon.alive("while idle")
    _, cpu1 = daemon.stat()
    figures.idle_rss = status_kib(daemon.proc.pid, "VmRSS")
    figures.idle_cpu = (cpu1 - cpu0) * 60 / settle


def recorded(daemon: SweepDaemon, name: str) -> bool:
    try:
        return daemon.has(name)
    except sqlite3.Error:  # locked for longer than the connection waits
        return False


def latency(daemon: SweepDaemon, tree: Path, n: int) -> tuple[float, float]:
    """p50, p95 of close -> row over LATENCY_FILES files written one at a time."""
    lat = []
    for i in range(LATENCY_FILES):
        name = f"{LATENCY_DIR}/l{i:04d}.jpg"
        with open(tree / name, "wb") as f:
            f.write(jpeg(2 * n + i))  # after the tree's and the burst's numbers
        closed = time.perf_counter()
        while not recorded(daemon, name):
            daemon.alive(f"at latency file {i + 1}")
            if time.perf_counter() - closed > ROW_TIMEOUT:
                raise DaemonFailed(f"latency file {i + 1} not recorded in {ROW_TIMEOUT:.0f} s")
            time.sleep(0.002)
        lat.append(time.perf_counter() - closed)
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.95) - 1]  # as suite.py


def burst_timeout(n: int) -> float:
    """600 s, or for a large burst as long as 1,000 files/s would take."""
    return max(600.0, n / 1000)


def burst(daemon: SweepDaemon, tree: Path, staging: Path, n: int) -> float:
    """Seconds from the rename until all n burst rows are in. The files of a directory
    moved in take the fast path (one look 50 ms later), not the quiet period."""
    timeout = burst_timeout(n)
    start = time.perf_counter()
    staging.rename(tree / BURST_DIR)  # all n at once
    seen, progressed = 0, start
    while True:
        count = daemon.burst_rows()
        now = time.perf_counter()
        if count >= n:
            return now - start
        took = now - start
        daemon.alive(f"{took:.0f} s into the burst, at {seen:,} of {n:,} rows")
        if took > timeout:
            raise DaemonFailed(f"did not finish in {timeout:.0f} s ({seen:,} of {n:,} rows)")
        if count > seen:
            seen, progressed = count, now
        elif now - progressed > STALL:
            raise DaemonFailed(
                f"stalled at {seen:,} of {n:,} rows for {STALL:.0f} s ({took:.0f} s in)"
            )
        # Counting a million rows takes a while and a core: look less often as it
        # goes on (within 1% of the time taken).
        time.sleep(min(1.0, max(0.005, took / 100)))


def check_all_rows(db: Path, n: int) -> None:
    with sqlite3.connect(db, timeout=30) as conn:
        total = int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    conn.close()
    expected = 2 * n + LATENCY_FILES
    if total != expected:
        raise DaemonFailed(f"{total:,} rows after the burst, not {expected:,}")


def measure(
    daemon: SweepDaemon, figures: DaemonFigures, tree: Path, staging: Path | None, settle: float
) -> None:
    n = figures.n
    daemon.wait_started(STARTUP_TIMEOUT)
    figures.startup_peak, _ = daemon.stat()
    idle(daemon, figures, settle)
    figures.latency = latency(daemon, tree, n)
    if staging is None:
        return
    seconds = burst(daemon, tree, staging, n)
    daemon.alive("after the burst")
    peak, _ = daemon.stat()
    # Checked before the figures are given: a burst that left other rows is no burst.
    check_all_rows(daemon.db, n)
    figures.burst, figures.burst_peak = seconds, peak


def stop(daemon: SweepDaemon, figures: DaemonFigures) -> None:
    try:
        code = daemon.daemon.stop()
    except subprocess.TimeoutExpired:
        figures.log.append("(the daemon did not stop within 60 s of SIGTERM: killed)")
        return
    if code != 0 and figures.failed is None:
        figures.log.append(f"(the daemon exited {code} on SIGTERM)")


def log_lines(daemon: SweepDaemon, failed: bool) -> list[str]:
    """Its warnings, errors and reconciles (and, when it failed, how its log ends)."""
    wanted = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback| reconcile: ")
    picked: list[str] = []
    more = 0
    end: deque[str] = deque(maxlen=10)
    # Line by line: at INFO a burst of millions logs a line per file.
    with open(daemon.daemon.log_path, errors="replace") as log:
        for line in log:
            end.append(line.rstrip("\n"))
            if wanted.search(line):
                if len(picked) < LOG_LINES:
                    picked.append(end[-1])
                else:
                    more += 1
    shown = picked + ([f"... {more} more"] if more else [])
    if failed:
        shown += ["(how its log ends:)", *end]
    if shown:
        shown.append(f"(the whole log: {daemon.daemon.log_path})")
    return shown


def daemon_figures(
    tree: Path, db: Path, work: Path, n: int, settle: float, staging: Path | None
) -> DaemonFigures:
    """One daemon on the recorded tree of n files and a copy of its database, all
    the figures in turn; what goes wrong is reported, not raised."""
    figures = DaemonFigures(n, burst_run=staging is not None)
    run_db = work / f"growth-{n}-daemon.db"
    copy_db(db, run_db)
    env = rescan_env(tree, f"sqlite:///{run_db}")
    # As suite.py's Daemon, so the quiet period taken off a burst is the one it had.
    env.update(IMGWATCH_LOG_LEVEL="INFO", IMGWATCH_QUIET_PERIOD=str(QUIET))
    # Made before the start: its watch is there when the first file is written.
    (tree / LATENCY_DIR).mkdir()
    # inotify: one watch per directory of 1,000 files. (Polling keeps a snapshot of
    # the whole tree: that mode is for network shares, not for this measurement.)
    daemon = SweepDaemon(run_db, work / f"daemon-{n}", env)
    try:
        measure(daemon, figures, tree, staging, settle)
    except DaemonFailed as exc:
        figures.failed = str(exc)
    finally:
        stop(daemon, figures)
        figures.log[:0] = log_lines(daemon, figures.failed is not None)
        put_back(work, n)
        remove_db(run_db)
    return figures


# --- the sweep ----------------------------------------------------------------------------


def mb(kib: int) -> str:
    return f"{kib / 1024:.0f} MB"


def per_file(seconds: float, n: int) -> str:
    return f"{seconds:.1f} s ({seconds / n * 1e6:.1f} us/file)"


def rescan_row(
    n: int, label: str, tree: Path, url: str, daemon: tuple[str, str], rounds: int
) -> tuple[str, ...]:
    first, first_rss = rescan(tree, url)
    # The unchanged rescan and the bare walk taken in turns, each round's two side by
    # side: on a shared machine one run of either may be 15% off.
    agains, bares, ratios, again_rss = [], [], [], 0
    for _ in range(rounds):
        again, rss = rescan(tree, url)
        bare, _ = bare_walk(tree)
        agains.append(again)
        bares.append(bare)
        ratios.append(again / bare)
        again_rss = max(again_rss, rss)
    return (
        f"{n:,}",
        label,
        per_file(first, n),
        mb(first_rss),
        per_file(statistics.median(agains), n),
        f"{statistics.median(bares):.2f} s",
        f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
        mb(again_rss),
        *daemon,
    )


def sweep_size(
    n: int, args: argparse.Namespace, work: Path, server: MariaDB | None
) -> tuple[list[tuple[str, ...]], DaemonFigures | None]:
    tree = tree_dir(work, n)
    staging = None if args.no_daemon or args.no_burst else staging_dir(work, n)
    put_back(work, n)
    made = time.perf_counter()
    make_tree(tree, n)
    print(f"{n:,} files: tree ready in {time.perf_counter() - made:.0f} s", flush=True)
    if staging is not None:
        made = time.perf_counter()
        make_tree(staging, n, offset=n)
        print(f"{n:,} files: burst ready in {time.perf_counter() - made:.0f} s", flush=True)
    db = work / f"growth-{n}.db"
    remove_db(db)
    sqlite = rescan_row(n, "SQLite", tree, f"sqlite:///{db}", ("-", "-"), args.rounds)
    figures = None
    if not args.no_daemon:
        figures = daemon_figures(tree, db, work, n, args.settle, staging)
        sqlite = sqlite[:-2] + figures.cells()[:2]
    rows = [sqlite]
    print(" | ".join(sqlite), flush=True)
    if figures is not None:
        print(" | ".join(("daemon", *figures.cells())), flush=True)
    if server is not None:
        url = server.create_database().render_as_string(hide_password=False)
        rows.append(rescan_row(n, "MariaDB", tree, url, ("-", "-"), args.rounds))
        print(" | ".join(rows[-1]), flush=True)
    return rows, figures


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def spread(label: str, kib: list[int]) -> str:
    if not kib:
        return f"{label}: not measured"
    low, high = min(kib), max(kib)
    return f"{label}: {mb(low)} to {mb(high)} ({(high / low - 1) * 100:+.0f}%)"


def print_daemon(figures: list[DaemonFigures]) -> None:
    head = (
        "files",
        "startup peak RSS",
        "idle RSS",
        "idle CPU",
        "latency p50 / p95",
        "burst of N more",
        "peak RSS after the burst",
    )
    print("\nThe daemon at each size:")
    table(head, [(f"{f.n:,}", *f.cells()) for f in figures])
    print()
    print(
        spread("startup peak RSS across sizes", [f.startup_peak for f in figures if f.startup_peak])
    )
    print(
        spread(
            "peak RSS after the burst across sizes", [f.burst_peak for f in figures if f.burst_peak]
        )
    )
    for f in figures:
        if f.log:
            print(f"\nthe daemon at {f.n:,} files: its log's warnings, errors and reconciles")
            for line in f.log:
                print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10k,100k", help="comma-separated: 10k,100k,1M,3M")
    parser.add_argument("--work", type=Path, help="where the trees go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the trees for the next run")
    parser.add_argument("--mariadb", action="store_true", help="also rescan into MariaDB")
    parser.add_argument(
        "--buffer-pool", default="1G", help="MariaDB's innodb_buffer_pool_size (default 1G)"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds the daemon idles")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon's figures")
    parser.add_argument("--no-burst", action="store_true", help="skip the daemon's burst")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="unchanged rescans, each beside a bare walk (the medians are printed)",
    )
    parser.add_argument("--code", type=Path, help="run imgwatch from this checkout instead")
    args = parser.parse_args()
    global CODE
    CODE = (args.code or ROOT).resolve()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="imgwatch-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    # With room for the table in InnoDB's cache, as on a production server: with
    # the tests' 64 MB, a million rows are read from the page cache, not memory.
    server = MariaDB(work / "mariadb", buffer_pool=args.buffer_pool) if args.mariadb else None
    if server is not None:
        server.start()
    rows: list[tuple[str, ...]] = []
    daemons: list[DaemonFigures] = []
    try:
        for n in sizes:
            size_rows, figures = sweep_size(n, args, work, server)
            rows += size_rows
            if figures is not None:
                daemons.append(figures)
    finally:
        if server is not None:
            server.stop()
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    head = (
        "files",
        "database",
        "first --rescan",
        "peak RSS",
        "unchanged --rescan",
        "bare walk",
        "ratio",
        "peak RSS",
        "daemon peak RSS",
        "daemon steady RSS",
    )
    table(head, rows)
    if daemons:
        print_daemon(daemons)


if __name__ == "__main__":
    main()
