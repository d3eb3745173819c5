"""Wiring (pipeline.py): each piece built as the settings say, without touching the
database or the network, and the preflight against the real WordPress."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from imgwatch.config import Settings, load_settings
from imgwatch.db.store import ImageStore
from imgwatch.errors import ConfigError
from imgwatch.model import Status
from imgwatch.pipeline import deletions, media_client, preflight, reconciler, uploader
from imgwatch.reconcile.deletions import GoneRow, HoldState
from imgwatch.wordpress.client import MediaClient
from imgwatch.wordpress.outcomes import RetryPolicy
from imgwatch.wordpress.pause import UploadPause
from tests.imagefiles import write_image
from tests.rows import all_rows
from tests.servers import WordPress, free_port

WP = {
    "wp_api_url": "https://wp.example/wp-json/wp/v2/media",
    "wp_user": "uploader",
    "wp_password": "app pass word",
}


def settings_for(image_dir: Path, **values: Any) -> Settings:
    return load_settings({"image_dir": str(image_dir), **values})


def unopened_store(tmp_path: Path) -> ImageStore:
    return ImageStore(URL.create("sqlite", database=str(tmp_path / "never.db")))


def test_without_wordpress_settings_there_is_no_client(image_dir: Path) -> None:
    assert media_client(settings_for(image_dir)) is None


def test_the_client_is_made_from_the_wordpress_settings(image_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    settings = settings_for(
        image_dir, **WP, wp_connect_timeout=3, wp_read_timeout=40, wp_ca_bundle=str(bundle)
    )
    client = media_client(settings)
    assert isinstance(client, MediaClient)
    assert (client.api_url, client.user, client.timeout) == (WP["wp_api_url"], "uploader", (3, 40))
    assert client.session.auth == ("uploader", "app pass word")
    assert client.session.verify == str(bundle)
    client.close()
    plain = media_client(settings_for(image_dir, **WP))
    assert plain is not None and plain.session.verify is True
    plain.close()


def test_the_uploader_follows_the_settings(image_dir: Path, tmp_path: Path) -> None:
    settings = settings_for(
        image_dir,
        **WP,
        wp_workers=3,
        wp_retries=5,
        wp_backoff=0.5,
        wp_backoff_max=8,
        wp_connect_timeout=2,
        wp_read_timeout=30,
        wp_probe_max=60,
        wp_share_identical=False,
        wp_delete_replaced=True,
        wp_reupload_deleted=False,
    )
    client = media_client(settings)
    assert client is not None
    store = unopened_store(tmp_path)
    up = uploader(settings, client, store)
    assert (up.client, up.store, up.image_dir) == (client, store, image_dir.resolve())
    assert up.workers == 3
    assert up.policy == RetryPolicy(attempts=5, base=0.5, cap=8)
    assert (up.share_identical, up.delete_replaced, up.reupload_deleted) == (False, True, False)
    assert up.pause.probe_max == 60
    # A claim outlasts one upload with every retry: each try's timeouts and longest
    # pause, once more for the probe after them, and a minute to spare.
    assert up.lease == (5 + 1) * (2 + 30 + 8) + 60
    assert not (tmp_path / "never.db").exists()  # the factory asked the database nothing
    store.close()
    client.close()


def test_the_uploader_s_defaults_share_identical_content(image_dir: Path, tmp_path: Path) -> None:
    settings = settings_for(image_dir, **WP)
    client = media_client(settings)
    assert client is not None
    up = uploader(settings, client, unopened_store(tmp_path))
    assert (up.share_identical, up.delete_replaced, up.reupload_deleted) == (True, False, True)
    assert up.policy == RetryPolicy(attempts=3, base=1.0, cap=30.0)
    up.store.close()
    client.close()


def test_the_preflight_of_a_good_site_pauses_nothing(
    live_wordpress: WordPress, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = MediaClient(
        live_wordpress.media_endpoint, "uploader", live_wordpress.passwords["uploader"]
    )
    pause = UploadPause()
    preflight(client, pause)
    assert pause.condition is None
    assert f"WordPress: {live_wordpress.media_endpoint}, user 'uploader' may upload" in caplog.text
    client.close()


def test_a_wrong_password_at_start_stops_the_run(live_wordpress: WordPress) -> None:
    client = MediaClient(live_wordpress.media_endpoint, "uploader", "not the password")
    pause = UploadPause()
    with pytest.raises(ConfigError, match="Application Password"):
        preflight(client, pause)
    assert pause.condition is None
    client.close()


def test_a_site_not_answering_at_start_only_pauses_the_uploads() -> None:
    client = MediaClient(f"http://127.0.0.1:{free_port()}/wp-json/wp/v2/media", "u", "pw")
    pause = UploadPause()
    preflight(client, pause)
    assert pause.condition is not None and pause.condition.kind == "unreachable"
    assert pause.seconds_to_probe() is not None  # and the site is probed again
    client.close()


def test_the_reconcile_follows_the_settings(image_dir: Path) -> None:
    settings = settings_for(
        image_dir,
        extensions=".png",
        default_description="From the settings",
        max_file_mb=0.5,
        batch_size=7,
        on_delete="forget",
        delete_guard_share=0.25,
        delete_guard_min=3,
    )
    store = unopened_store(image_dir.parent)
    rec = reconciler(settings, store, image_dir, uploads=True)
    assert (rec.store, rec.image_dir, rec.batch_size, rec.uploads) == (
        store,
        image_dir,
        7,
        True,
    )
    assert rec.accept.extensions == (".png",)
    assert rec.processor.default_description == "From the settings"
    assert rec.processor.max_bytes == 2**19
    assert (rec.deletions.policy, rec.deletions.where, rec.deletions.quiet) == (
        "forget",
        str(image_dir),
        False,
    )
    assert (rec.deletions.guard.share, rec.deletions.guard.minimum) == (0.25, 3)
    assert not (image_dir.parent / "never.db").exists()
    store.close()


def test_a_reconcile_built_from_settings_records_what_they_say(
    store: ImageStore, image_dir: Path
) -> None:
    write_image(image_dir / "a.png")
    write_image(image_dir / "b.jpg")  # not among the extensions
    write_image(image_dir / "big.png", 400, 400)  # random pixels: over 256 KiB
    settings = settings_for(
        image_dir, extensions=".png", default_description="From the settings", max_file_mb=0.25
    )
    summary = reconciler(settings, store, image_dir, uploads=False).run()
    assert (summary.new, summary.rejected) == (1, 1)
    rows = {r["file_name"]: r for r in all_rows(store)}
    assert set(rows) == {"a.png", "big.png"}
    assert (rows["a.png"]["status"], rows["a.png"]["description"]) == (
        Status.DONE,
        "From the settings",
    )
    assert "over the 0.25 MiB limit" in rows["big.png"]["last_error"]


def test_a_dry_run_s_deletions_are_quiet_and_a_purge_without_wordpress_forgets(
    image_dir: Path,
) -> None:
    settings = settings_for(image_dir, on_delete="purge")
    store = unopened_store(image_dir.parent)
    hold = HoldState()
    rec = reconciler(settings, store, image_dir, uploads=False, hold=hold, dry_run=True)
    assert rec.deletions.quiet and rec.deletions.hold is hold
    assert rec.deletions.policy == "forget"  # nothing to hand purged rows to
    handed: list[list[GoneRow]] = []
    purging = deletions(settings, store, image_dir, purge=handed.append)
    assert (purging.policy, purging.purge, purging.quiet) == ("purge", handed.append, False)
    assert (purging.guard.share, purging.guard.minimum) == (
        settings.delete_guard_share,
        settings.delete_guard_min,
    )
    store.close()
