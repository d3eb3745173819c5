"""Addresses (wordpress/addresses.py): where a site's REST routes live, and upload names."""

from __future__ import annotations

import pytest

from imgwatch.errors import ConfigError
from imgwatch.wordpress.addresses import EXTENSION_FOR_MIME, ApiRoot, upload_file_name


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


@pytest.mark.parametrize(
    ("setting", "root"),
    [
        # Without the trailing slash, and at the root of the REST API itself.
        ("https://site.example/wp-json", ApiRoot("https://site.example/wp-json/", False)),
        ("https://site.example/wp-json/", ApiRoot("https://site.example/wp-json/", False)),
        # A query after a pretty address is not part of the root.
        (
            "https://site.example/wp-json/wp/v2/media?per_page=5",
            ApiRoot("https://site.example/wp-json/", False),
        ),
        # The plain form keeps the script it is asked through, and nothing of the query.
        (
            "http://site.example/blog/index.php?rest_route=/wp/v2/media&x=1",
            ApiRoot("http://site.example/blog/index.php", True),
        ),
        ("http://site.example?rest_route=/", ApiRoot("http://site.example/", True)),
        # Blanks around a value pasted into an env file.
        (
            "  https://site.example/wp-json/wp/v2/media \n",
            ApiRoot("https://site.example/wp-json/", False),
        ),
    ],
)
def test_the_root_is_found_in_any_endpoint_url(setting: str, root: ApiRoot) -> None:
    assert ApiRoot.from_setting(setting) == root


@pytest.mark.parametrize(
    "site", ["https://site.example/", "https://site.example/blog", "http://h:8080"]
)
def test_a_bare_site_url_is_left_to_discovery(site: str) -> None:
    assert ApiRoot.from_setting(site) is None


def test_a_password_in_the_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(ConfigError) as info:
        ApiRoot.from_setting("https://uploader:s3cret-pass@site.example/wp-json/")
    assert "IMGWATCH_WP_USER" in str(info.value)
    assert "s3cret-pass" not in str(info.value) and "uploader" not in str(info.value)


def test_a_discovered_root_is_taken_as_the_site_gives_it() -> None:
    # The Link header of a site names the root; a root in neither known form is used as is.
    assert ApiRoot.from_discovered("https://site.example/wp-json/") == ApiRoot(
        "https://site.example/wp-json/", False
    )
    assert ApiRoot.from_discovered("https://site.example/?rest_route=/") == ApiRoot(
        "https://site.example/", True
    )
    odd = ApiRoot.from_discovered("https://site.example/api")
    assert odd == ApiRoot("https://site.example/api/", False)
    assert odd.url("wp/v2/media/") == ("https://site.example/api/wp/v2/media", {})


def test_routes_are_joined_whatever_their_slashes() -> None:
    pretty = ApiRoot("https://site.example/wp-json/", False)
    plain = ApiRoot("https://site.example/", True)
    for route in ("wp/v2/users/me", "/wp/v2/users/me", "/wp/v2/users/me/"):
        assert pretty.url(route) == ("https://site.example/wp-json/wp/v2/users/me", {})
        assert plain.url(route) == ("https://site.example/", {"rest_route": "/wp/v2/users/me"})


@pytest.mark.parametrize(("mime", "extension"), sorted(EXTENSION_FOR_MIME.items()))
def test_the_upload_name_ends_as_wordpress_expects_for_the_content(
    mime: str, extension: str
) -> None:
    assert upload_file_name("photos/IMG 1.jpeg", mime) == "IMG-1" + extension


def test_an_unknown_type_is_uploaded_as_a_jpeg_name() -> None:
    assert upload_file_name("scan.heic", "image/heic") == "scan.jpg"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("README", "README.png"),  # no extension at all
        (".png", "image.png"),  # no stem at all
        (".hidden.png", "hidden.png"),  # a leading dot goes
        ("..-a-..png", "a.png"),
        ("dir.with.dots/x.y.png", "x.y.png"),  # only the last extension goes
        ("tab\there.png", "tab-here.png"),
    ],
)
def test_the_upload_name_is_cleaned_at_its_edges(name: str, expected: str) -> None:
    assert upload_file_name(name, "image/png") == expected


def test_a_long_name_is_cut_before_its_extension() -> None:
    name = upload_file_name("x" * 300 + ".gif", "image/gif")
    assert name == "x" * 120 + ".gif"
