"""`imgwatch retry`: failed and rejected rows due again, held deletions confirmed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from imgwatch.config import Settings
from imgwatch.db.schema import conditions, images
from imgwatch.db.store import ImageStore
from imgwatch.errors import UsageError
from imgwatch.files.names import row_name
from imgwatch.model import ConditionKind

EXIT_SOME_UNKNOWN = 1


def run(settings: Settings, args: argparse.Namespace) -> int:
    """`imgwatch retry [--failed] [--rejected] [--confirm-deletes] [FILE ...]`."""
    return retry(settings, args.failed, args.rejected, args.files, args.confirm_deletes)


def retry(
    settings: Settings,
    failed: bool,
    rejected: bool,
    files: Sequence[str],
    confirm_deletes: bool = False,
) -> int:
    if not (failed or rejected or files or confirm_deletes):
        failed = True
    names = [file_row_name(settings.image_dir, f) for f in files]
    store = ImageStore(settings.database_url())
    try:
        store.open(create=False)
        if confirm_deletes:
            confirm_held_deletions(store)
            if not (failed or rejected or files):
                return 0
        if images.name in store.missing_tables:
            print("retry: nothing to retry, the database has no images table yet")
            return EXIT_SOME_UNKNOWN if names else 0
        if store.images_unadopted:
            # The original service's table: no status yet, every row is read anyway.
            print("retry: nothing to retry, imgwatch has not adopted the images table yet")
            return 0
        result = store.retry(failed=failed, rejected=rejected, names=names)
    finally:
        store.close()
    print(
        f"retry: {result.uploads} failed upload(s) due now, "
        f"{result.rereads} file(s) to be read again",
        flush=True,
    )
    for name in result.in_progress:
        print(f"retry: {name!r} is being uploaded now, left alone", file=sys.stderr)
    for name in result.unknown:
        print(f"retry: no row for {name!r}", file=sys.stderr)
    return EXIT_SOME_UNKNOWN if result.unknown else 0


def file_row_name(image_dir: Path, given: str) -> str:
    """The row name of a file named on the command line: a path (absolute, or from
    the current directory) inside the image directory, or a name relative to it."""
    path = Path(given)
    # Made absolute lexically, not resolved: a link inside the tree is named by its
    # own path; the directory itself is tried both as given and resolved.
    full = os.path.abspath(path)  # noqa: PTH100
    roots = {os.path.abspath(image_dir), os.path.realpath(image_dir)}  # noqa: PTH100
    for root in roots:
        if full.startswith(root.rstrip("/") + "/"):
            return row_name(full[len(root.rstrip("/")) + 1 :])
    if path.is_absolute():
        raise UsageError(f"{given!r} is not inside the image directory {image_dir}")
    return row_name(os.path.normpath(given))


def confirm_held_deletions(store: ImageStore) -> None:
    held = [] if conditions.name in store.missing_tables else store.conditions()
    rows = sum(c.rows or 0 for c in held if c.kind == ConditionKind.DELETIONS_HELD)
    if not rows:
        print("retry: no deletions are held", flush=True)
        return
    if not store.confirm_held_deletions():
        print(f"retry: the {rows} held deletion(s) were confirmed already", flush=True)
        return
    print(
        f"retry: {rows} held deletion(s) confirmed: the running daemon applies them within "
        "a minute, or the next --rescan does",
        flush=True,
    )
