"""WordPress upload throughput: imgwatch beside a parallel curl loop and the original service.

Starts the same throwaway MariaDB + WordPress as the test suite, generates N
distinct 1600x1200 JPEGs per approach, and uploads them three ways in one run:

- curl:       `xargs -P <workers> curl --data-binary`, raw-body uploads, the yardstick
- imgwatch:   `imgwatch --rescan` (scan + hash + upload) with <workers> workers
- original:   one multipart `requests.post` at a time, as dynamic_image_saver.py did

Prints a table with files/s and each approach's ratio to curl. Target: imgwatch
>= 0.9x curl. Ratios measured side by side are what count; absolute numbers
depend on the machine (WordPress makes sub-sizes with GD inside each request).

    .venv/bin/python benchmarks/wp_upload.py --files 40 --workers 4 --rounds 1
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imgwatch.commands.rescan import rescan  # noqa: E402
from imgwatch.config import load_settings  # noqa: E402
from imgwatch.wordpress.outcomes import Outcome  # noqa: E402
from tests.servers import MariaDB, WordPress  # noqa: E402


def make_jpegs(directory: Path, count: int, width: int, height: int) -> list[Path]:
    """Distinct photo-sized JPEGs (a gradient with shapes: compresses like a photo)."""
    directory.mkdir(parents=True)
    paths = []
    rng = random.Random(os.urandom(8))  # noqa: S311 - test pictures, not secrets
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    for i in range(count):
        img = base.copy()
        draw = ImageDraw.Draw(img)
        for _ in range(40):
            x, y = rng.randrange(width), rng.randrange(height)
            color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            draw.ellipse((x, y, x + rng.randrange(20, 300), y + rng.randrange(20, 300)), color)
        path = directory / f"photo-{i:04d}.jpg"
        img.save(path, "JPEG", quality=85)
        paths.append(path)
    return paths


def run_curl(site: WordPress, paths: list[Path], workers: int, scratch: Path) -> None:
    # Credentials in a curl config file, not on the command line.
    config = scratch / "curl.conf"
    config.write_text(f'user = "uploader:{site.passwords["uploader"]}"\n')
    config.chmod(0o600)
    listing = "\n".join(str(p) for p in paths) + "\n"
    subprocess.run(
        [
            "xargs",
            "-P",
            str(workers),
            "-I",
            "{}",
            "curl",
            "-sS",
            "-o",
            str(scratch / "last-answer.json"),
            "-K",
            str(config),
            "-H",
            "Content-Type: image/jpeg",
            "-H",
            'Content-Disposition: attachment; filename="{}"',
            "--data-binary",
            "@{}",
            site.media_endpoint,
        ],
        input=listing.encode(),
        check=True,
    )


def run_imgwatch(site: WordPress, image_dir: Path, workers: int, scratch: Path) -> None:
    settings = load_settings(
        {
            "image_dir": str(image_dir),
            "db_url": f"sqlite:///{scratch / 'bench.db'}",
            "wp_api_url": site.media_endpoint,
            "wp_user": "uploader",
            "wp_password": site.passwords["uploader"],
            "wp_workers": workers,
        }
    )
    result = rescan(settings)
    if result.uploads is None or result.uploads[Outcome.DONE] != len(list(image_dir.iterdir())):
        raise SystemExit(f"imgwatch did not upload everything: {result.line()}")


def run_original(site: WordPress, paths: list[Path]) -> None:
    # dynamic_image_saver.py: one multipart POST per file, no session, one at a time.
    for path in paths:
        with path.open("rb") as f:
            resp = requests.post(
                site.media_endpoint,
                files={"file": (path.name, f, "image/jpeg")},
                auth=("uploader", site.passwords["uploader"]),
                timeout=300,
            )
        resp.raise_for_status()


def timed_run(name: str, site: WordPress, paths: list[Path], workers: int, scratch: Path) -> float:
    """Seconds one approach takes to upload `paths`."""
    started = time.perf_counter()
    if name == "curl":
        run_curl(site, paths, workers, scratch)
    elif name == "imgwatch":
        run_imgwatch(site, paths[0].parent, workers, scratch)
    else:
        run_original(site, paths)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="JPEGs per approach and round")
    parser.add_argument("--workers", type=int, default=4, help="parallel uploads")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the median is shown")
    parser.add_argument("--size", default="1600x1200", help="image size WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="imgwatch-bench-"))
    db = MariaDB(work / "mariadb")
    db.start()
    site = WordPress(work / "wordpress", db)
    try:
        site.start()
        times: dict[str, list[float]] = {"curl": [], "imgwatch": [], "original": []}
        for rnd in range(args.rounds):
            sets = {
                name: make_jpegs(work / f"r{rnd}-{name}", args.files, width, height)
                for name in times
            }
            order = list(times)
            if rnd % 2:
                order.reverse()  # alternate the order so no approach always goes first
            for name in order:
                scratch = work / f"r{rnd}-{name}-scratch"
                scratch.mkdir()
                times[name].append(timed_run(name, site, sets[name], args.workers, scratch))
        curl = statistics.median(times["curl"])
        print(
            f"\nWordPress upload, {args.files} JPEGs {args.size} per approach, "
            f"{args.workers} workers, {args.rounds} round(s), {os.cpu_count()} CPUs\n"
        )
        print(f"{'approach':<34}{'seconds':>9}{'files/s':>9}{'vs curl':>9}")
        labels = {
            "curl": f"parallel curl loop (-P {args.workers})",
            "imgwatch": f"imgwatch --rescan ({args.workers} workers)",
            "original": "original service (sequential)",
        }
        for name, label in labels.items():
            secs = statistics.median(times[name])
            print(f"{label:<34}{secs:>9.2f}{args.files / secs:>9.2f}{curl / secs:>8.2f}x")
        print("\ntarget: imgwatch >= 0.90x curl")
    finally:
        site.stop()
        db.stop()


if __name__ == "__main__":
    main()
