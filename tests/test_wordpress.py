"""The WordPress client: pure parsing rules, then every call against the real test site."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
import requests

from imgwatch.errors import ConfigError, PermanentError, TransientError
from imgwatch.wordpress import (
    ApiRoot,
    Media,
    MediaClient,
    error_from_response,
    parse_retry_after,
    upload_file_name,
)
from tests.imagefiles import write_image
from tests.servers import WordPress, free_port

# --- rules, no network ---------------------------------------------------------------


def test_api_root_from_each_url_form() -> None:
    pretty = ApiRoot.from_setting("https://site.example/blog/wp-json/wp/v2/media")
    assert pretty == ApiRoot("https://site.example/blog/wp-json/", rest_route=False)
    assert pretty.url("/wp/v2/media/7") == ("https://site.example/blog/wp-json/wp/v2/media/7", {})
    plain = ApiRoot.from_setting("https://site.example/?rest_route=/wp/v2/media")
    assert plain == ApiRoot("https://site.example/", rest_route=True)
    assert plain.url("/wp/v2/media/7") == (
        "https://site.example/",
        {"rest_route": "/wp/v2/media/7"},
    )
    assert ApiRoot.from_setting("https://site.example") is None  # bare site: discover


@pytest.mark.parametrize(
    "bad", ["ftp://site/wp-json/", "site.example/wp-json", "https://u:pw@site/wp-json/"]
)
def test_api_url_must_be_plain_http(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        ApiRoot.from_setting(bad)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "mime", "expected"),
    [
        ("a.jpg", "image/jpeg", "a.jpg"),
        ("dir/Big Photo.JPG", "image/jpeg", "Big-Photo.jpg"),
        ("caf\u00e9 \U0001f600.png", "image/png", "cafe.png"),
        ('we"ird;name.gif', "image/gif", "we-ird-name.gif"),
        ("really-a-png.jpg", "image/png", "really-a-png.png"),
        ("\U0001f600.jpg", "image/jpeg", "image.jpg"),
    ],
)
def test_upload_file_name_is_plain_ascii_with_the_real_extension(
    name: str, mime: str, expected: str
) -> None:
    assert upload_file_name(name, mime) == expected


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    past = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")
    assert past == 0.0


def fake_response(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = body
    resp.headers.update(headers or {})
    resp.reason = "Reason"
    return resp


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            500,
            b'{"code":"rest_upload_sideload_error","message":"Sorry, you are not allowed to '
            b'upload this file type."}',
            "perm",
        ),
        (
            500,
            b'{"code":"rest_upload_sideload_error","message":"Unable to create directory '
            b'wp-content/uploads/2026/11. Is its parent directory writable by the server?"}',
            "transient",
        ),
        (500, b'{"code":"rest_upload_unknown_error","message":"too big"}', "perm"),
        (500, b"<html>Fatal error</html>", "transient"),
        (502, b"", "transient"),
        (503, b'{"code":"x","message":"busy"}', "transient"),
        (408, b"", "transient"),
        (429, b"", "transient"),
        (412, b'{"code":"rest_upload_hash_mismatch","message":"mismatch"}', "transient"),
        (400, b'{"code":"rest_upload_no_data","message":"No data supplied."}', "perm"),
        (413, b"<html>Request Entity Too Large</html>", "perm"),
    ],
)
def test_error_classification(status: int, body: bytes, kind: str) -> None:
    err = error_from_response(fake_response(status, body), "upload")
    assert isinstance(err, PermanentError if kind == "perm" else TransientError)
    assert str(status) in str(err)


def test_error_message_carries_wordpress_code_and_words() -> None:
    err = error_from_response(
        fake_response(400, b'{"code":"rest_upload_no_data","message":"No <b>data</b>."}'), "upload"
    )
    assert str(err) == "WordPress upload: 400 rest_upload_no_data: No data ."


def test_retry_after_is_kept_on_429() -> None:
    err = error_from_response(fake_response(429, b"", {"Retry-After": "7"}), "upload")
    assert isinstance(err, TransientError) and err.retry_after == 7.0


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


def test_unreachable_site_is_transient() -> None:
    client = MediaClient(f"http://127.0.0.1:{free_port()}/wp-json/wp/v2/media", "u", "pw")
    with pytest.raises(TransientError, match="cannot connect"):
        client.preflight()


def upload(client: MediaClient, path: Path, slug: str, md5: str | None = None) -> Media:
    data = path.read_bytes()
    return client.upload(
        io.BytesIO(data),
        file_name=path.name,
        mime_type="image/jpeg" if path.suffix == ".jpg" else "image/bmp",
        md5_hex=md5 or hashlib.md5(data).hexdigest(),
        slug=slug,
        fields={"title": "T\u00eftle", "description": "D"},
    )


def test_upload_find_and_delete(live_wordpress: WordPress, tmp_path: Path) -> None:
    client = client_for(live_wordpress)
    path = write_image(tmp_path / "photo.jpg", 64, 48)
    slug = "img-" + hashlib.sha256(path.read_bytes()).hexdigest()
    media = client.upload(
        io.BytesIO(path.read_bytes()),
        file_name="photo.jpg",
        mime_type="image/jpeg",
        md5_hex=hashlib.md5(path.read_bytes()).hexdigest(),
        slug=slug,
        fields={"title": "T\u00eftle", "description": "D"},
    )
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
