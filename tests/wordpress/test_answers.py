"""What WordPress's answers mean (wordpress/answers.py): the file's refusal, a condition
of the site, or unsure; built from hand-made responses and real loopback sockets."""

from __future__ import annotations

import email.utils
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from imgwatch.errors import PermanentError, SiteCondition, TransientError
from imgwatch.wordpress.answers import (
    RETRY_AFTER_MAX,
    classify,
    connection_condition,
    is_json,
    one_line,
    page_kind,
    parse_retry_after,
    reason,
    suggested_api_url,
    unexpected_success,
    wp_error,
)
from tests.servers import free_port


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("\u00b2") is None  # a digit to str.isdigit(), no number
    assert parse_retry_after("99999999999") == 86400.0  # a day at most
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
    resp.url = "https://site.example/wp-json/wp/v2/media?slug=img-1"
    return resp


HTML = b"<!DOCTYPE html><html><body>page</body></html>"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        # The file: WordPress's own JSON errors about this upload, and 413.
        (
            500,
            b'{"code":"rest_upload_sideload_error","message":"Sorry, you are not allowed to '
            b'upload this file type."}',
            "file",
        ),
        (500, b'{"code":"rest_upload_unknown_error","message":"too big"}', "file"),
        (400, b'{"code":"rest_upload_no_data","message":"No data supplied."}', "file"),
        (400, b'{"code":"rest_upload_image_type_not_supported","message":"no"}', "file"),
        (400, b'{"code":"rest_upload_file_too_big","message":"big"}', "file"),
        (413, b"<html>Request Entity Too Large</html>", "file"),
        # Unsure: retried, then the probe decides.
        (
            500,
            b'{"code":"rest_upload_sideload_error","message":"Unable to create directory '
            b'wp-content/uploads/2026/11. Is its parent directory writable by the server?"}',
            "unsure",
        ),
        (500, b"<html>Fatal error</html>", "unsure"),
        (502, b"", "unsure"),
        (503, b'{"code":"x","message":"busy"}', "unsure"),
        (408, b"", "unsure"),
        (412, b'{"code":"rest_upload_hash_mismatch","message":"mismatch"}', "unsure"),
        # The site.
        (401, b'{"code":"rest_not_logged_in","message":"not logged in"}', "site:unauthorized"),
        (401, b"", "site:unauthorized"),
        (403, HTML, "site:firewall"),
        (403, b'{"code":"rest_forbidden","message":"no"}', "site:refused_user"),
        (404, HTML, "site:no_api"),
        (404, b'{"code":"rest_no_route","message":"No route"}', "site:no_api"),
        (429, b"", "site:rate_limited"),
        (400, b'{"code":"rest_cannot_create","message":"no"}', "site:not_allowed"),
        (400, b'{"code":"rest_upload_limited_space","message":"full"}', "site:no_space"),
        (400, b'{"code":"rest_upload_user_quota_exceeded","message":"quota"}', "site:no_space"),
        (414, HTML, "file"),
        (400, HTML, "site:not_wordpress"),
        (301, b"", "site:redirect"),
        (302, b"", "site:redirect"),
    ],
)
def test_answer_classification(status: int, body: bytes, kind: str) -> None:
    headers = {"Location": "https://new.example/wp-json/wp/v2/media?slug=img-1"}
    err = classify(fake_response(status, body, headers), "upload", user="u", body_bytes=3 << 20)
    expected = {"file": PermanentError, "unsure": TransientError}.get(kind, SiteCondition)
    assert type(err) is expected, err
    if isinstance(err, SiteCondition):
        assert err.kind == kind.removeprefix("site:")
    if status not in {301, 302}:  # a redirect is named by its target
        assert str(status) in str(err)


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (403, HTML, "WordPress answers 403 with an HTML page: a security plugin or firewall"),
        (401, b'{"code":"rest_not_logged_in","message":"x"}', "it may have been revoked"),
        (413, HTML, "refused a file of 3.0 MB (413 Request Entity Too Large)"),
        (413, HTML, "nginx client_max_body_size; PHP upload_max_filesize and post_max_size"),
        (
            301,
            b"",
            "WordPress at https://site.example/wp-json/wp/v2/media redirects to "
            "https://new.example/wp-json/wp/v2/media; set IMGWATCH_WP_API_URL to it",
        ),
    ],
)
def test_answers_are_explained_in_plain_words(status: int, body: bytes, words: str) -> None:
    headers = {"Location": "https://new.example/wp-json/wp/v2/media?slug=img-1"}
    err = classify(fake_response(status, body, headers), "upload", user="u", body_bytes=3 << 20)
    assert words in str(err)
    assert "slug=" not in str(err)  # no query strings (a slug, text) in messages


def test_redirect_target_is_given_as_the_media_endpoint() -> None:
    assert suggested_api_url("https://n.example/wp-json/wp/v2/users/me?context=edit") == (
        "https://n.example/wp-json/wp/v2/media"
    )
    assert suggested_api_url("https://n.example/?rest_route=/wp/v2/users/me") == (
        "https://n.example/?rest_route=/wp/v2/media"
    )
    assert suggested_api_url("https://n.example/login") == "https://n.example/login"


@pytest.mark.parametrize("action", ["update", "delete"])
def test_a_403_about_one_media_item_is_that_items(action: str) -> None:
    # An Author may not edit or delete another user's media: that item, not the site.
    body = b'{"code":"rest_cannot_delete","message":"Sorry, you are not allowed"}'
    assert isinstance(classify(fake_response(403, body), action), PermanentError)
    assert isinstance(classify(fake_response(403, body), "upload"), SiteCondition)


def test_error_message_carries_wordpress_code_and_words() -> None:
    err = classify(
        fake_response(400, b'{"code":"rest_upload_no_data","message":"No <b>data</b>."}'), "upload"
    )
    assert str(err) == "WordPress upload: 400 rest_upload_no_data: No data ."


def test_retry_after_is_kept_on_429_and_503() -> None:
    err = classify(fake_response(429, b"", {"Retry-After": "7"}), "upload")
    assert isinstance(err, SiteCondition) and err.retry_after == 7.0
    err = classify(fake_response(503, HTML, {"Retry-After": "9"}), "upload")
    assert isinstance(err, TransientError) and err.retry_after == 9.0


# --- what each answer says, beyond its kind ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "settings"),
    [
        # Wrong settings: stopping at start says so, rather than waiting silently.
        (401, b"", True),
        (403, b'{"code":"rest_forbidden","message":"no"}', True),
        (404, b'{"code":"rest_no_route","message":"No route"}', True),
        (400, b'{"code":"rest_cannot_create","message":"no"}', True),
        (301, b"", True),
        # Conditions that may pass by themselves.
        (403, HTML, False),
        (404, HTML, False),  # a proxy's 404 page may be passing
        (429, b"", False),
        (400, b'{"code":"rest_upload_limited_space","message":"full"}', False),
        (400, HTML, False),
    ],
)
def test_only_conditions_that_mean_wrong_settings_say_so(
    status: int, body: bytes, settings: bool
) -> None:
    err = classify(fake_response(status, body, {"Location": "https://new.example/"}), "upload")
    assert isinstance(err, SiteCondition)
    assert err.settings is settings


def test_the_user_is_named_in_conditions_about_the_user() -> None:
    for status, body in [
        (401, b""),
        (403, b'{"code":"rest_forbidden","message":"no"}'),
        (400, b'{"code":"rest_cannot_create","message":"no"}'),
    ]:
        assert "user 'uploader'" in str(
            classify(fake_response(status, body), "upload", user="uploader")
        )


def test_a_413_without_a_known_size_names_a_file() -> None:
    err = classify(fake_response(413, HTML), "upload")
    assert isinstance(err, PermanentError)
    assert "refused a file (413 Request Entity Too Large)" in str(err)


def test_a_404_is_named_at_the_site_as_configured_or_as_asked() -> None:
    asked = fake_response(404, HTML)
    asked.url = "https://site.example/?rest_route=/wp/v2/media&slug=img-1&title=Secret"
    err = classify(asked, "lookup")
    assert "at https://site.example/?rest_route=/wp/v2/media:" in str(err)
    assert "Secret" not in str(err) and "slug" not in str(err)
    configured = classify(asked, "lookup", site="https://cms.example/wp-json/wp/v2/media")
    assert "at https://cms.example/wp-json/wp/v2/media:" in str(configured)


def test_a_redirect_without_a_location_names_the_address_asked() -> None:
    err = classify(fake_response(302, b""), "upload", site="https://site.example/wp-json/")
    assert isinstance(err, SiteCondition) and err.kind == "redirect"
    assert "redirects to https://site.example/wp-json/wp/v2/media;" in str(err)


def test_a_relative_redirect_is_named_in_full() -> None:
    resp = fake_response(301, b"", {"Location": "/new/wp-json/wp/v2/media?slug=img-1"})
    assert "redirects to https://site.example/new/wp-json/wp/v2/media;" in str(
        classify(resp, "upload")
    )


def test_a_retry_after_date_counts_from_now_and_is_capped() -> None:
    soon = email.utils.formatdate(time.time() + 120, usegmt=True)
    wait = parse_retry_after(soon)
    assert wait is not None and 110 <= wait <= 120
    far = email.utils.formatdate(time.time() + 30 * 86400, usegmt=True)
    assert parse_retry_after(far) == RETRY_AFTER_MAX
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("") is None


def test_a_5xx_without_wordpress_json_says_what_came_instead() -> None:
    assert str(classify(fake_response(502, HTML), "upload")) == "WordPress upload: 502 HTML page"
    assert str(classify(fake_response(504, b""), "lookup")) == "WordPress lookup: 504 empty answer"


def test_the_kind_of_a_page_comes_from_its_type_or_its_first_byte() -> None:
    assert page_kind(fake_response(200, b"")) == "an empty answer"
    assert page_kind(fake_response(200, b"x", {"Content-Type": "text/html"})) == "an HTML page"
    assert page_kind(fake_response(200, b"  <html>")) == "an HTML page"
    assert page_kind(fake_response(200, b"x", {"Content-Type": "text/plain; charset=utf-8"})) == (
        "a text/plain answer"
    )
    assert page_kind(fake_response(200, b"x")) == "a non-JSON answer"


def test_only_a_json_object_with_a_code_is_wordpress_s_error() -> None:
    error = wp_error(fake_response(400, b'{"code":"c","message":"two\\n  lines"}'))
    assert error == ("c", "two lines")
    assert wp_error(fake_response(400, b'{"message":"no code"}')) is None
    assert wp_error(fake_response(400, b'["code"]')) is None
    assert wp_error(fake_response(400, HTML)) is None
    assert is_json(fake_response(200, b"[]")) and not is_json(fake_response(200, HTML))


def test_a_success_that_is_not_wordpress_s_answer_is_a_condition_of_the_site() -> None:
    page = unexpected_success(fake_response(200, HTML), "upload", "the new media item")
    assert (page.kind, page.settings) == ("not_wordpress", False)
    assert "answers 200 with an HTML page instead of JSON" in str(page)
    odd = unexpected_success(fake_response(201, b'{"ok":1}'), "upload", "the new media item")
    assert odd.kind == "not_wordpress"
    assert "answers 201 to the upload where it answers with the new media item" in str(odd)


def test_one_line_drops_markup_and_is_bounded() -> None:
    assert one_line("<p>Not\n\t<b>allowed</b></p>") == "Not allowed"
    assert len(one_line("word " * 200)) == 300


# --- requests that fail before an answer: real sockets on loopback ------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def hanging_up_port() -> Iterator[int]:
    """A port that takes each request and closes the connection without an answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def failure_of(url: str, timeout: tuple[float, float] = (2, 2)) -> requests.RequestException:
    with requests.Session() as session:
        try:
            session.get(url, timeout=timeout)
        except requests.RequestException as exc:
            return exc
    raise AssertionError(f"{url} answered")


def test_a_refused_connection_is_a_condition_of_the_site() -> None:
    host = f"127.0.0.1:{free_port()}"
    exc = failure_of(f"http://{host}/wp-json/?slug=img-secret")
    condition = connection_condition(exc, host, (2, 2))
    assert isinstance(condition, SiteCondition) and condition.kind == "unreachable"
    assert str(condition).startswith(f"cannot connect to WordPress at {host}: ")
    assert "img-secret" not in str(condition)


def test_no_answer_after_connecting_is_unsure(silent_port: int) -> None:
    host = f"127.0.0.1:{silent_port}"
    exc = failure_of(f"http://{host}/", timeout=(2, 0.3))
    condition = connection_condition(exc, host, (2, 0.3))
    assert isinstance(condition, TransientError)
    assert str(condition) == "no answer within 0.3 s (timed out)"


def test_a_connection_dropped_mid_request_is_unsure(hanging_up_port: int) -> None:
    host = f"127.0.0.1:{hanging_up_port}"
    exc = failure_of(f"http://{host}/?slug=img-secret")
    condition = connection_condition(exc, host, (2, 2))
    assert isinstance(condition, TransientError)
    assert str(condition).startswith("connection dropped: ")
    assert "img-secret" not in str(condition)


def test_no_connection_within_the_connect_timeout_is_a_condition_of_the_site() -> None:
    condition = connection_condition(requests.ConnectTimeout("timed out"), "wp.example", (3, 9))
    assert isinstance(condition, SiteCondition) and condition.kind == "unreachable"
    assert str(condition) == "cannot connect to WordPress at wp.example: no answer within 3 s"


def test_tls_fails_for_the_site_in_its_handshake_and_is_unsure_midway() -> None:
    handshake = requests.exceptions.SSLError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    condition = connection_condition(handshake, "wp.example", (3, 9))
    assert isinstance(condition, SiteCondition) and condition.kind == "tls"
    assert str(condition).startswith("TLS with WordPress at wp.example failed: ")
    midway = requests.exceptions.SSLError("EOF occurred in violation of protocol")
    assert isinstance(connection_condition(midway, "wp.example", (3, 9)), TransientError)


def test_a_reason_is_the_innermost_cause_without_query_strings() -> None:
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as inner:
            raise requests.ConnectionError("GET https://wp.example/?slug=img-1 failed") from inner
    except requests.ConnectionError as exc:
        assert reason(exc) == "[Errno 104] Connection reset by peer"
    assert reason(ValueError("see https://wp.example/x?title=Secret 'here'")) == (
        "see https://wp.example/x?… 'here'"
    )
    assert reason(TimeoutError()) == "TimeoutError"
