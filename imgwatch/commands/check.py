"""`imgwatch check`: is everything in place for the daemon to run, `nginx -t` style.

Each check prints one line; the first problem ends the run with exit 78 and says
what is wrong in plain words. Nothing is changed: not the database (not even its
schema), not WordPress.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgwatch.config import Settings
from imgwatch.daemon.watch import wants_polling
from imgwatch.db.standin import NotingStore
from imgwatch.db.store import ImageStore
from imgwatch.errors import ConfigError, ImgwatchError, UploadError
from imgwatch.files.decide import as_state, unchanged
from imgwatch.files.names import ImageNameFilter, row_name
from imgwatch.files.walk import FoundFile, WalkState, check_image_dir, walk
from imgwatch.model import (
    GONE,
    STATE,
    ConditionKind,
    FileState,
)
from imgwatch.pipeline import media_client
from imgwatch.reconcile.deletions import DeleteGuard
from imgwatch.reconcile.merge import RowMerge

INOTIFY_LIMITS = Path("/proc/sys/fs/inotify")


def run(settings: Settings, args: argparse.Namespace | None = None) -> int:
    """`imgwatch check`."""
    say("settings", "valid")
    try:
        root = check_image_dir(settings.image_dir)
        say("image directory", f"{root} is a readable directory")
        store = ImageStore(settings.database_url())
        try:
            store.open(create=False)
            _check_database(store)
            _check_wordpress(settings)
            _check_tree_and_plan(settings, root, store)
        finally:
            store.close()
    except (ImgwatchError, UploadError) as exc:
        print(f"problem: {exc}", flush=True)
        print("check: failed", flush=True)
        return ConfigError.exit_code
    print("check: ok", flush=True)
    return 0


def say(what: str, detail: str) -> None:
    print(f"ok: {what}: {detail}", flush=True)


def _check_database(store: ImageStore) -> None:
    detail = f"{store.display_url} answers"
    if store.schema_changes:
        detail += "; the daemon would " + "; ".join(store.schema_changes)
    say("database", detail)


def _check_wordpress(settings: Settings) -> None:
    client = media_client(settings)
    if client is None:
        say("WordPress", "not configured: files are recorded, not uploaded")
        return
    try:
        # ConfigError (a refused password, a redirect …) or SiteCondition (a firewall,
        # a maintenance page, no answer …), in plain words.
        client.preflight()
    finally:
        client.close()
    say("WordPress", f"{client.api_url} accepts uploads from user {client.user!r}")


def _check_tree_and_plan(settings: Settings, root: Path, store: ImageStore) -> None:
    """Walk the tree as the startup reconcile would (stat only, nothing read), then
    compare with the rows: what the daemon would do first."""
    state = WalkState()
    rows_seen = NotingStore(store)  # reads rows whatever the schema's state
    rows = RowMerge(rows_seen.file_state_pages(), exact=rows_seen.names_in_code_point_order())
    counts = {"new": 0, "changed": 0, "same": 0}
    unmatched: list[FoundFile] = []  # no row beside the walk: looked up by name, in batches
    for found in walk(root, ImageNameFilter(settings.extensions), state):
        name = row_name(found.file_name)
        row = rows.take(name)
        if row is None and not rows.may_have_row(name, found.file_name):
            counts["new"] += 1
        elif row is None:
            unmatched.append(found)
            if len(unmatched) >= _LOOKUP_BATCH:
                _look_up(rows_seen, rows, unmatched, counts)
        else:
            counts[_compare(row, found)] += 1
    _look_up(rows_seen, rows, unmatched, counts)
    new, changed, same = counts["new"], counts["changed"], counts["same"]
    if state.unreadable_dirs:
        first = state.unreadable_dirs[0] or "."
        raise ConfigError(
            f"{len(state.unreadable_dirs)} directory(ies) under {root} cannot be listed "
            f"(first: {first!r}): give the daemon's user read and search permission"
        )
    _check_watch(settings, root, state.directories)
    gone = sum(1 for r in rows.rest() if r[STATE] != GONE)
    live = rows.live
    uploads = ""
    if settings.wordpress_enabled and rows_seen.images_ready:
        uploads = f", {len(store.due_uploads(include_scheduled=True))} recorded upload(s) due"
    deletes = _deletes(settings, rows_seen, gone, live, empty=not (new + changed + same))
    say(
        "startup reconcile",
        f"would read {new} new and {changed} changed file(s), leave {same} unchanged, "
        f"{deletes}{uploads}",
    )


def _deletes(settings: Settings, rows: NotingStore, gone: int, live: int, *, empty: bool) -> str:
    """What the startup reconcile would do with the rows whose file is gone: the
    mass-deletion guard's own rule, an operator's confirmation counted."""
    if not gone:
        return "mark 0 row(s) missing"
    held = next((c for c in rows.conditions() if c.kind == ConditionKind.DELETIONS_HELD), None)
    confirmed = held is not None and held.confirmed_at is not None and gone <= (held.rows or 0)
    guard = DeleteGuard(settings.delete_guard_share, settings.delete_guard_min)
    if guard.holds(gone, live, empty=empty) and not confirmed:
        return f"hold the deletion of {gone} row(s) (the mass-deletion guard)"
    policy = settings.on_delete
    if policy == "purge" and not settings.wordpress_enabled:
        policy = "forget"  # no media item to delete
    verb = {"missing": "mark {} row(s) missing", "forget": "forget {} row(s)"}.get(
        policy, "purge {} row(s) and their media items"
    )
    return verb.format(gone) + (" (confirmed)" if confirmed else "")


def _check_watch(settings: Settings, root: Path, directories: int) -> None:
    if wants_polling(settings.watch_mode, root):
        say(
            "watch",
            f"polling {directories} directory(ies) every {settings.poll_interval:g} s "
            f"(watch mode {settings.watch_mode})",
        )
        return
    watches = read_limit("max_user_watches")
    instances = read_limit("max_user_instances")
    if watches is not None and directories >= watches:
        raise ConfigError(
            f"the tree has {directories} directories but fs.inotify.max_user_watches is "
            f"{watches}: raise it (sysctl fs.inotify.max_user_watches={2 * directories}) "
            "or set IMGWATCH_WATCH_MODE=polling"
        )
    say(
        "watch",
        f"inotify on {directories} directory(ies); fs.inotify.max_user_watches "
        f"{_shown(watches)} (shared by all of this user's processes), "
        f"max_user_instances {_shown(instances)}",
    )


def read_limit(name: str) -> int | None:
    try:
        return int((INOTIFY_LIMITS / name).read_text())
    except (OSError, ValueError):
        return None


def _shown(limit: int | None) -> str:
    return "unknown" if limit is None else str(limit)


# Files with no row beside the walk looked up in one query: where the database
# orders names differently from the walk, a row may come after its file.
_LOOKUP_BATCH = 1000


def _look_up(
    rows_seen: NotingStore, rows: RowMerge, found: list[FoundFile], counts: dict[str, int]
) -> None:
    names = [row_name(f.file_name) for f in found]
    known = rows_seen.lookup_many(names)
    for f, name in zip(found, names, strict=True):
        row = known.get(name)
        if row is None:
            counts["new"] += 1
        else:
            rows.found_late(name)
            counts[_compare(as_state(name, row), f)] += 1
    found.clear()


def _compare(row: FileState, found: FoundFile) -> str:
    """What the startup reconcile would make of a file with a row (a missing row's
    file is never unchanged: files/decide.py)."""
    return "same" if unchanged(row, found) else "changed"
