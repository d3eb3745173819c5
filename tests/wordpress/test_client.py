"""The WordPress client: every call against the real test site."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
import requests

from imgwatch.errors import ConfigError, PermanentError, SiteCondition, TransientError
from imgwatch.wordpress.client import Media, MediaClient, MediaGone
from tests.faultproxy import FaultProxy
from tests.imagefiles import write_image
from tests.servers import WordPress, free_port

# --- against the real WordPress ------------------------------------------------------


def client_for(site: WordPress, url: str | None = None, user: str = "uploader") -> MediaClient:
    return MediaClient(url or site.media_endpoint, user, site.passwords[user], read_timeout=60)


@pytest.mark.parametrize("form", ["pretty", "plain", "site"])
def test_preflight_with_each_url_form(live_wordpress: WordPress, form: str) -> None:
    url = {
        "pretty": live_wordpress.media_endpoint,
        "plain": f"{live_wordpress.url}/?rest_route=/wp/v2/media",
        "site": live_wordpress.url,
    }[form]
    client = client_for(live_wordpress, url)
    client.preflight()
    assert client.find_by_slug("img-does-not-exist") is None
    client.close()


def test_wrong_password_explains_application_passwords(live_wordpress: WordPress) -> None:
    client = MediaClient(live_wordpress.media_endpoint, "uploader", "not the password")
    with pytest.raises(ConfigError, match="Application Password") as info:
        client.preflight()
    assert "not the password" not in str(info.value)


def test_user_without_upload_files_is_refused(live_wordpress: WordPress) -> None:
    with pytest.raises(ConfigError, match="upload_files"):
        client_for(live_wordpress, user="reader").preflight()


def test_unreachable_site_is_a_condition_of_the_site() -> None:
    client = MediaClient(f"http://127.0.0.1:{free_port()}/wp-json/wp/v2/media", "u", "pw")
    with pytest.raises(SiteCondition, match=r"cannot connect to WordPress at 127\.0\.0\.1") as info:
        client.preflight()
    assert info.value.kind == "unreachable"


def upload(client: MediaClient, path: Path, slug: str, md5: str | None = None) -> Media:
    data = path.read_bytes()
    media, later = client.upload(
        io.BytesIO(data),
        file_name=path.name,
        mime_type="image/jpeg" if path.suffix == ".jpg" else "image/bmp",
        md5_hex=md5 or hashlib.md5(data).hexdigest(),
        slug=slug,
        fields={"title": "T\u00eftle", "description": "D"},
    )
    assert later == {}
    return media


def test_upload_find_and_delete(live_wordpress: WordPress, tmp_path: Path) -> None:
    client = client_for(live_wordpress)
    path = write_image(tmp_path / "photo.jpg", 64, 48)
    slug = "img-" + hashlib.sha256(path.read_bytes()).hexdigest()
    media = upload(client, path, slug)
    served = requests.get(media.source_url, timeout=30)
    assert served.content == path.read_bytes()
    assert client.find_by_slug(slug) == media
    item, _ = live_wordpress.api(f"/wp/v2/media/{media.id}", context="edit")
    assert (item["title"]["raw"], item["slug"]) == ("T\u00eftle", slug)
    assert client.delete(media.id) is True
    assert client.find_by_slug(slug) is None
    assert client.delete(media.id) is False


def test_md5_mismatch_is_transient(live_wordpress: WordPress, tmp_path: Path) -> None:
    path = write_image(tmp_path / "m.jpg")
    with pytest.raises(TransientError, match="rest_upload_hash_mismatch"):
        upload(client_for(live_wordpress), path, "img-md5-test", md5="0" * 32)


def test_refused_file_type_is_permanent(live_wordpress: WordPress, tmp_path: Path) -> None:
    path = write_image(tmp_path / "b.bmp")
    with pytest.raises(PermanentError, match="rest_upload_sideload_error"):
        upload(client_for(live_wordpress), path, "img-bmp-test")


def test_500_after_attachment_is_finished_not_repeated(
    live_wordpress: WordPress, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(live_wordpress)
    path = write_image(tmp_path / "die-in-subsizes-x.jpg", 400, 300)
    before = live_wordpress.media_count()
    slug = "img-" + hashlib.sha256(path.read_bytes()).hexdigest()
    media = upload(client, path, slug)
    assert "answered 500 after storing media" in caplog.text
    assert live_wordpress.media_count() == before + 1
    item, _ = live_wordpress.api(f"/wp/v2/media/{media.id}", context="edit")
    assert item["missing_image_sizes"] == []  # post-process made the sub-sizes
    assert item["media_details"]["sizes"]


def test_tls_is_verified_by_default_or_with_the_given_bundle(tmp_path: Path) -> None:
    assert MediaClient("https://wp.example/wp-json/wp/v2/media", "u", "p").session.verify is True
    bundle = tmp_path / "ca.pem"
    client = MediaClient("https://wp.example/", "u", "p", ca_bundle=str(bundle))
    assert client.session.verify == str(bundle)


def test_every_request_has_a_timeout(live_wordpress: WordPress) -> None:
    client = MediaClient(
        live_wordpress.media_endpoint,
        "uploader",
        live_wordpress.passwords["uploader"],
        connect_timeout=3,
        read_timeout=7,
    )
    seen: list[object] = []
    real = client.session.request

    def spy(*args: object, **kwargs: Any) -> requests.Response:
        seen.append(kwargs.get("timeout"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    client.session.request = spy  # type: ignore[method-assign]
    client.preflight()
    client.find_by_slug("img-x")
    assert seen == [(3, 7), (3, 7)]


# --- what the site says on a bad day, through a proxy in front of the real WordPress ----


@pytest.fixture
def proxy(live_wordpress: WordPress) -> Any:
    p = FaultProxy(live_wordpress.url)
    yield p
    p.close()


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        ("html200", "not_wordpress", "answers 200 with an HTML page instead of JSON"),
        ("html403", "firewall", "a security plugin or firewall may be blocking the REST API"),
        ("json401", "unauthorized", "it may have been revoked, or a plugin disables"),
        ("html404", "no_api", "no REST API there"),
        ("redirect301", "redirect", "redirects to"),
        ("redirect302", "redirect", "redirects to"),
        ("drop", "no_answer", "is not answering properly (connection dropped"),
        ("error", "no_answer", "is not answering properly (500 internal_server_error: broken)"),
    ],
)
def test_each_site_condition_is_named_by_the_probe_and_stops_an_upload(
    live_wordpress: WordPress, proxy: FaultProxy, tmp_path: Path, mode: str, kind: str, words: str
) -> None:
    client = client_for(live_wordpress, proxy.url + "/wp-json/wp/v2/media")
    assert client.probe() is None
    proxy.mode = mode
    proxy.redirect_to = "https://moved.example"
    condition = client.probe()
    assert condition is not None
    assert (condition.kind, words in str(condition)) == (kind, True), str(condition)
    assert live_wordpress.passwords["uploader"] not in str(condition)
    if mode not in {"drop", "error"}:  # those are unsure for one request: retried first
        with pytest.raises(SiteCondition):
            upload(client, write_image(tmp_path / "s.jpg"), f"img-site-{mode}")
    proxy.mode = "pass"
    assert client.probe() is None


def test_a_refused_connection_is_a_condition_of_the_site(
    live_wordpress: WordPress, proxy: FaultProxy
) -> None:
    client = client_for(live_wordpress, proxy.url + "/wp-json/wp/v2/media")
    proxy.refuse()
    try:
        condition = client.probe()
    finally:
        proxy.accept()
    assert condition is not None and condition.kind == "unreachable"
    assert f"cannot connect to WordPress at 127.0.0.1:{proxy.port}" in str(condition)
    assert client.probe() is None


def test_a_moved_site_is_named_at_start_and_gets_no_credentials(
    live_wordpress: WordPress, proxy: FaultProxy
) -> None:
    target = FaultProxy(live_wordpress.url)  # where the site moved: records what arrives
    try:
        proxy.mode = "redirect301"
        proxy.redirect_to = target.url
        client = client_for(live_wordpress, proxy.url + "/wp-json/wp/v2/media")
        with pytest.raises(ConfigError) as info:
            client.preflight()
        assert str(info.value) == (
            f"WordPress at {proxy.url}/wp-json/wp/v2/media redirects to "
            f"{target.url}/wp-json/wp/v2/media; set IMGWATCH_WP_API_URL to it"
        )
        assert "Application Password" not in str(info.value)
        assert target.seen == []  # not followed, so no password went there
        # Set to the new address, it works.
        client_for(live_wordpress, target.url + "/wp-json/wp/v2/media").preflight()
    finally:
        target.close()


def test_a_revoked_password_at_start_is_a_settings_error(
    live_wordpress: WordPress, proxy: FaultProxy
) -> None:
    proxy.mode = "json401"
    with pytest.raises(ConfigError, match="Application Password"):
        client_for(live_wordpress, proxy.url + "/wp-json/wp/v2/media").preflight()
    proxy.mode = "html403"  # a firewall can go away by itself: waited out, not fatal
    with pytest.raises(SiteCondition, match="firewall"):
        client_for(live_wordpress, proxy.url + "/wp-json/wp/v2/media").preflight()


def test_413_from_the_web_server_refuses_the_file_naming_the_limit(
    live_wordpress: WordPress, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.body_limit = 10_000
    client = client_for(live_wordpress, proxy.url + "/wp-json/wp/v2/media")
    big = write_image(tmp_path / "big.jpg", 400, 400)
    assert big.stat().st_size > proxy.body_limit
    data = big.read_bytes()
    with pytest.raises(PermanentError) as info:
        client.upload(
            io.BytesIO(data),
            file_name="big.jpg",
            mime_type="image/jpeg",
            md5_hex=hashlib.md5(data).hexdigest(),
            slug="img-413",
            fields={},
            size=len(data),
        )
    assert f"refused a file of {len(data) / 2**20:.1f} MB (413" in str(info.value)
    assert client.probe() is None  # the site itself is fine


def test_update_fields_in_place_and_a_deleted_item(
    live_wordpress: WordPress, tmp_path: Path
) -> None:
    client = client_for(live_wordpress)
    path = write_image(tmp_path / "t.jpg")
    media = upload(client, path, "img-update-" + hashlib.sha256(path.read_bytes()).hexdigest())
    client.update_fields(media.id, {"title": "New", "caption": "C", "alt_text": "A"})
    item, _ = live_wordpress.api(f"/wp/v2/media/{media.id}", context="edit")
    assert (item["title"]["raw"], item["caption"]["raw"], item["alt_text"]) == ("New", "C", "A")
    assert item["description"]["raw"] == "D"  # not sent, not touched
    assert client.delete(media.id)
    with pytest.raises(MediaGone):
        client.update_fields(media.id, {"title": "Again"})


def test_a_maintenance_page_at_a_bare_site_url_is_waited_out_not_fatal(
    live_wordpress: WordPress, proxy: FaultProxy
) -> None:
    proxy.mode = "error"
    with pytest.raises(SiteCondition) as info:
        client_for(live_wordpress, proxy.url).preflight()
    assert not info.value.settings


def test_a_discovered_api_on_another_host_gets_no_credentials(
    live_wordpress: WordPress, proxy: FaultProxy
) -> None:
    # The site's Link header names WordPress's own address, not the one configured.
    with pytest.raises(ConfigError, match=r"says its REST API is at http://127\.0\.0\.1:\d+/"):
        client_for(live_wordpress, proxy.url).preflight()
    assert not any(auth for _, _, auth in proxy.seen)  # discovery asks without them
