"""Wiring: the WordPress client, the uploader and the reconcile as the settings say.

The daemon and `--rescan` (commands/rescan.py) build their pieces here alike.
The factories touch neither the database nor the network; preflight() alone asks
WordPress, once, at start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from imgwatch.config import Settings
from imgwatch.db.store import ImageStore
from imgwatch.errors import SiteCondition
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.record import FileProcessor
from imgwatch.reconcile.deletions import DeleteGuard, Deletions, GoneRow, GoneRows, HoldState
from imgwatch.reconcile.reconciler import Claims, Progress, Readers, Reconciler, Rows
from imgwatch.wordpress.client import MediaClient
from imgwatch.wordpress.outcomes import RetryPolicy
from imgwatch.wordpress.pause import UploadPause
from imgwatch.wordpress.uploader import Uploader

log = logging.getLogger(__name__)


def media_client(settings: Settings) -> MediaClient | None:
    """The WordPress client, or None when WordPress is not configured."""
    if not settings.wordpress_enabled:
        return None
    assert settings.wp_api_url and settings.wp_user and settings.wp_password
    return MediaClient(
        settings.wp_api_url,
        settings.wp_user,
        settings.wp_password.get_secret_value(),
        connect_timeout=settings.wp_connect_timeout,
        read_timeout=settings.wp_read_timeout,
        ca_bundle=str(settings.wp_ca_bundle) if settings.wp_ca_bundle else None,
        pool_size=settings.wp_workers,
    )


def uploader(settings: Settings, client: MediaClient, store: ImageStore) -> Uploader:
    """The uploader as the settings say (call claims.take_over first: see there)."""
    # One upload() with every retry: connect + read timeout and the longest pause, each try.
    per_try = settings.wp_connect_timeout + settings.wp_read_timeout + settings.wp_backoff_max
    return Uploader(
        client,
        store,
        settings.image_dir.resolve(),
        workers=settings.wp_workers,
        policy=RetryPolicy(settings.wp_retries, settings.wp_backoff, settings.wp_backoff_max),
        share_identical=settings.wp_share_identical,
        delete_replaced=settings.wp_delete_replaced,
        reupload_deleted=settings.wp_reupload_deleted,
        pause=UploadPause(probe_max=settings.wp_probe_max),
        # And one more: the probe that follows used-up retries, and finishing a 500.
        lease=(settings.wp_retries + 1) * per_try + 60,
    )


def preflight(client: MediaClient, pause: UploadPause) -> None:
    """Wrong settings (password, address) stop the run (ConfigError); any other
    condition of the site only pauses the uploads."""
    try:
        client.preflight()
    except SiteCondition as condition:
        pause.report(condition)
    else:
        log.info("WordPress: %s, user %r may upload", client.api_url, client.user)


def reconciler(
    settings: Settings,
    store: Rows,
    image_dir: Path,
    *,
    uploads: bool,
    readers: Readers | None = None,
    progress: Progress | None = None,
    claims: Claims | None = None,
    purge: Callable[[list[GoneRow]], None] | None = None,
    hold: HoldState | None = None,
    dry_run: bool = False,
) -> Reconciler:
    """A reconcile of image_dir as the settings say: one-shot (--rescan, dry runs),
    or the daemon's, which claims each file from its workers. Rows whose file is
    gone go as IMGWATCH_ON_DELETE says (purged ones to `purge`), behind the guard."""
    return Reconciler(
        store=store,
        image_dir=image_dir,
        accept=ImageNameFilter(settings.extensions),
        processor=FileProcessor(settings.default_description, settings.max_file_bytes),
        batch_size=settings.batch_size,
        uploads=uploads,
        claims=claims,
        readers=readers,
        progress=progress,
        deletions=deletions(settings, store, image_dir, purge=purge, hold=hold, quiet=dry_run),
    )


def deletions(
    settings: Settings,
    store: GoneRows,
    image_dir: Path,
    *,
    purge: Callable[[list[GoneRow]], None] | None = None,
    hold: HoldState | None = None,
    quiet: bool = False,
) -> Deletions:
    """What becomes of rows whose file is gone, as the settings say."""
    return Deletions(
        store,
        policy=settings.on_delete,
        guard=DeleteGuard(settings.delete_guard_share, settings.delete_guard_min),
        where=str(image_dir),
        hold=hold,
        purge=purge,
        quiet=quiet,
    )
