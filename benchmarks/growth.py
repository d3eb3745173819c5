"""How cost grows with the tree: whole processes at several sizes, one table.

    .venv/bin/python benchmarks/growth.py                       # 10k and 100k files
    .venv/bin/python benchmarks/growth.py --sizes 10k,100k,1M   # the goals' sizes
    .venv/bin/python benchmarks/growth.py --sizes 3M --work /big/disk --keep

For each size: a tree of small real JPEGs in directories of 1,000, then, each as
its own process the way a user runs it,
- the first `imgwatch --rescan` (every file read and recorded),
- an unchanged `imgwatch --rescan`, beside a bare scandir+stat walk of the same
  tree in a Python process of its own (the floor: what any reconcile must do),
- the daemon: peak RSS once its startup reconcile of the recorded tree is over,
  and its resident memory some seconds later (steady state).
SQLite by default; --mariadb also runs both rescans against the test MariaDB.

Peak RSS is the largest process's (wait4's ru_maxrss, or the daemon's VmHWM).
The goals: peak RSS at most 150 MB at 1,000,000 files and flat across sizes;
the unchanged rescan at most 1.5x the bare walk at 1,000,000 files.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemonproc import DaemonProcess  # noqa: E402
from tests.servers import MariaDB  # noqa: E402

PER_DIR = 1000
CODE = ROOT  # the imgwatch source the processes run (--code: another checkout, to compare)

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


def make_tree(root: Path, count: int) -> None:
    """count small JPEGs, each its own bytes (a counter in a comment segment)."""
    marker = root / ".complete"
    if marker.exists() and int(marker.read_text()) == count:
        return
    shutil.rmtree(root, ignore_errors=True)
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 120, 40)).save(out, "JPEG")
    base = out.getvalue()
    head, body = base[:2], base[2:]  # SOI, then the rest
    for i in range(count):
        d = root / f"d{i // PER_DIR:05d}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        comment = b"imgwatch benchmark %09d" % i
        com = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        (d / f"{i:08d}.jpg").write_bytes(head + com + body)
    marker.write_text(str(count))


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one whole process."""
    start = time.perf_counter()
    # Run from the checkout measured: `-m imgwatch` imports from the working directory first.
    proc = subprocess.Popen(
        argv, env=env, cwd=CODE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err[-2000:]}")
    return elapsed, usage.ru_maxrss


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


def daemon_memory(tree: Path, db_url: str, work: Path, settle: float) -> tuple[int, int]:
    """(peak RSS after the startup reconcile, RSS `settle` seconds later), in KiB."""
    env = rescan_env(tree, db_url)
    env["IMGWATCH_LOG_LEVEL"] = "INFO"
    # inotify: one watch per directory of 1,000 files. (Polling keeps a snapshot of
    # the whole tree: that mode is for network shares, not for this measurement.)
    daemon = DaemonProcess(work / "daemon", env)
    try:
        daemon.wait_notified("READY=1", 120)
        daemon.wait_log(r"startup reconcile: ", 3600)
        pid = daemon.process.pid
        peak = status_kib(pid, "VmHWM")
        time.sleep(settle)
        steady = status_kib(pid, "VmRSS")
    finally:
        daemon.stop()
    return peak, steady


def mb(kib: int) -> str:
    return f"{kib / 1024:.0f} MB"


def per_file(seconds: float, n: int) -> str:
    return f"{seconds:.1f} s ({seconds / n * 1e6:.1f} us/file)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10k,100k", help="comma-separated: 10k,100k,1M,3M")
    parser.add_argument("--work", type=Path, help="where the trees go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the trees for the next run")
    parser.add_argument("--mariadb", action="store_true", help="also rescan into MariaDB")
    parser.add_argument("--settle", type=float, default=10.0, help="daemon steady-state wait")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon's figures")
    parser.add_argument("--code", type=Path, help="run imgwatch from this checkout instead")
    args = parser.parse_args()
    global CODE
    CODE = (args.code or ROOT).resolve()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="imgwatch-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    server = MariaDB(work / "mariadb") if args.mariadb else None
    if server is not None:
        server.start()
    rows: list[tuple[str, ...]] = []
    try:
        for n in sizes:
            tree = work / f"tree-{n}"
            made = time.perf_counter()
            make_tree(tree, n)
            print(f"{n:,} files: tree ready in {time.perf_counter() - made:.0f} s", flush=True)
            dbs = [("SQLite", f"sqlite:///{work}/growth-{n}.db")]
            if server is not None:
                url = server.create_database().render_as_string(hide_password=False)
                dbs.append(("MariaDB", url))
            for label, url in dbs:
                if label == "SQLite":
                    Path(f"{work}/growth-{n}.db").unlink(missing_ok=True)
                first, first_rss = rescan(tree, url)
                again, again_rss = rescan(tree, url)
                bare, _ = bare_walk(tree)
                daemon = ("-", "-")
                if label == "SQLite" and not args.no_daemon:
                    peak, steady = daemon_memory(tree, url, work, args.settle)
                    daemon = (mb(peak), mb(steady))
                rows.append(
                    (
                        f"{n:,}",
                        label,
                        per_file(first, n),
                        mb(first_rss),
                        per_file(again, n),
                        f"{bare:.2f} s",
                        f"{again / bare:.2f}x",
                        mb(again_rss),
                        *daemon,
                    )
                )
                print(" | ".join(rows[-1]), flush=True)
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
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
