"""What an answer from WordPress, or from the server in front of it, means.

Three kinds, because each calls for something different:

- **the file was refused** (PermanentError): WordPress's own JSON error about this
  upload (type not allowed, too big for WordPress), or 413 from the web server in
  front of it. The row ends `failed` with a reason a person can act on, and the
  file is not sent again until it changes or is retried.
- **a condition of the site** (SiteCondition): 401, 403, 404 without a REST route,
  a redirect, an answer that is not WordPress's JSON (a maintenance or cache page,
  a firewall, a captive portal), no connection. None of it says anything about
  the file: every upload pauses and the site is probed until it answers properly.
- **unsure** (TransientError): a 5xx, a timeout, a connection dropped mid-request.
  Retried a few times; if it persists, a probe of the site tells whether the site
  is at fault (a pause) or only this file is (PHP dying on one huge image: the
  file's own retry schedule, without holding up the others).
"""

from __future__ import annotations

import email.utils
import errno
import re
import time
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

import requests

from imgwatch.errors import PermanentError, SiteCondition, TransientError

# 5xx codes that mean "this file will never be accepted", not "try later".
REFUSED_FILE_CODES = frozenset({"rest_upload_sideload_error", "rest_upload_unknown_error"})
# 4xx codes worth another try: the body changed on disk while it was being sent.
RETRY_CODES = frozenset({"rest_upload_hash_mismatch"})
# JSON errors that are about the user, not the file: every upload would get them.
NOT_ALLOWED_CODES = frozenset({"rest_cannot_create", "rest_forbidden", "rest_cannot_edit"})
# Multisite: the site's or the user's upload quota is used up; no file fits until
# space is freed.
NO_SPACE_CODES = frozenset({"rest_upload_limited_space", "rest_upload_user_quota_exceeded"})
# A Retry-After beyond this (a day) is taken as this: a header is no reason to stop.
RETRY_AFTER_MAX = 86400.0

AUTH_ADVICE = (
    "WordPress accepts only an Application Password over the REST API, not the login "
    "password: create one under Users -> Profile -> Application Passwords (WordPress 5.6+, "
    "site on HTTPS) and set it as IMGWATCH_WP_PASSWORD"
)
BODY_LIMIT_ADVICE = (
    "raise its request-body limit (nginx client_max_body_size; PHP upload_max_filesize "
    "and post_max_size)"
)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is true, and no number
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), RETRY_AFTER_MAX)


def wp_error(resp: requests.Response) -> tuple[str, str] | None:
    """WordPress's own error (code, message) when the body is one, else None."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, dict) and "code" in body:
        return str(body.get("code")), one_line(str(body.get("message", "")))
    return None


def is_json(resp: requests.Response) -> bool:
    try:
        resp.json()
    except ValueError:
        return False
    return True


def page_kind(resp: requests.Response) -> str:
    """What a non-JSON body is, in words: an HTML page, an empty answer …"""
    if not resp.content:
        return "an empty answer"
    content_type = resp.headers.get("Content-Type", "").lower()
    if "html" in content_type or resp.content.lstrip()[:1] == b"<":
        return "an HTML page"
    return f"a {content_type.split(';')[0] or 'non-JSON'} answer"


def classify(
    resp: requests.Response,
    action: str,
    *,
    user: str = "",
    site: str = "",
    body_bytes: int | None = None,
) -> TransientError | PermanentError | SiteCondition:
    """What a non-success answer to `action` (upload, lookup, update …) means; `site`
    is the address as configured, for the messages (default: the one asked)."""
    status = resp.status_code
    site = site or _address(resp)
    if 300 <= status < 400:
        return redirect_condition(resp, site)
    error = wp_error(resp)
    by_status = _by_status(resp, error, user, site, body_bytes)
    if by_status is not None:
        return by_status
    if status >= 500 or status == 408:
        if error is not None and error[0] in REFUSED_FILE_CODES and not _is_storage_race(*error):
            return PermanentError(f"WordPress {action}: {status} {error[0]}: {error[1]}")
        detail = f"{error[0]}: {error[1]}" if error else page_kind(resp).removeprefix("an ")
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return TransientError(f"WordPress {action}: {status} {detail}", retry_after)
    if error is None:
        return _not_wordpress(resp)
    return _by_code(status, *error, action=action, user=user)


def _by_status(
    resp: requests.Response,
    error: tuple[str, str] | None,
    user: str,
    site: str,
    body_bytes: int | None,
) -> PermanentError | SiteCondition | None:
    """The answers whose status alone says what they mean."""
    status = resp.status_code
    if status == 414:
        return PermanentError(
            "the web server in front of WordPress refused the request line (414 URI Too "
            "Long): the file's text fields are longer than it takes"
        )
    if status == 413:
        size = f"a file of {body_bytes / 2**20:.1f} MB" if body_bytes is not None else "a file"
        return PermanentError(
            f"the web server in front of WordPress refused {size} (413 Request Entity "
            f"Too Large): {BODY_LIMIT_ADVICE}"
        )
    if status == 429:
        return SiteCondition(
            "rate_limited",
            f"WordPress asks for fewer requests (429 Too Many Requests{_code(error)})",
            parse_retry_after(resp.headers.get("Retry-After")),
        )
    if status == 401:
        return SiteCondition(
            "unauthorized",
            f"WordPress refuses the Application Password of user {user!r} "
            f"(401{_code(error)}): it may have been revoked, or a plugin disables "
            "Application Passwords",
            settings=True,
        )
    if status == 404 and (error is None or error[0] == "rest_no_route"):
        return SiteCondition(
            "no_api",
            f"WordPress answers 404{_code(error) or ' with ' + page_kind(resp)} at "
            f"{site}: no REST API there (the address is wrong, or a plugin "
            "disables the REST API)",
            # WordPress itself saying so; a proxy's 404 page may be passing.
            settings=error is not None,
        )
    return None


def _not_wordpress(resp: requests.Response) -> SiteCondition:
    """A 4xx whose body is not WordPress's JSON: something in front answered."""
    if resp.status_code == 403:
        return SiteCondition(
            "firewall",
            f"WordPress answers 403 with {page_kind(resp)}: a security plugin or firewall "
            "may be blocking the REST API",
        )
    return SiteCondition(
        "not_wordpress",
        f"WordPress answers {resp.status_code} with {page_kind(resp)} instead of JSON: a "
        "maintenance page, a cache, a firewall or a login page stands in front of the "
        "REST API",
    )


def _by_code(
    status: int, code: str, message: str, *, action: str, user: str
) -> TransientError | PermanentError | SiteCondition:
    """A 4xx with WordPress's own JSON error: about the user, the site, or the file."""
    if status == 403 and action in _ITEM_ACTIONS:
        # Updating or deleting one media item (of another user, say): that item only.
        return PermanentError(f"WordPress {action}: 403 {code}: {message}")
    if status == 403:
        return SiteCondition(
            "refused_user",
            f"WordPress refuses user {user!r} (403 {code}: {message})",
            settings=True,
        )
    if code in NOT_ALLOWED_CODES:
        return SiteCondition(
            "not_allowed",
            f"WordPress user {user!r} may not upload files ({status} {code}): give it the "
            "upload_files capability (e.g. the Author role)",
            settings=True,
        )
    if code in NO_SPACE_CODES:
        return SiteCondition(
            "no_space", f"WordPress has no upload space left ({status} {code}: {message})"
        )
    if code in RETRY_CODES:
        return TransientError(f"WordPress {action}: {status} {code}: {message}")
    return PermanentError(f"WordPress {action}: {status} {code}: {message}")


def unexpected_success(resp: requests.Response, action: str, expected: str) -> SiteCondition:
    """A 2xx that is not what WordPress answers to `action`: something else answered."""
    if not is_json(resp):
        return _not_wordpress(resp)
    return SiteCondition(
        "not_wordpress",
        f"WordPress answers {resp.status_code} to the {action} where it answers with "
        f"{expected}: something in front of the REST API answers for it",
    )


def redirect_condition(resp: requests.Response, site: str) -> SiteCondition:
    target = urljoin(resp.url, resp.headers.get("Location", ""))
    return SiteCondition(
        "redirect",
        f"WordPress at {site} redirects to {suggested_api_url(target)}; "
        "set IMGWATCH_WP_API_URL to it",
        settings=True,
    )


def suggested_api_url(target: str) -> str:
    """The media endpoint at the address a redirect points to (no query but the route)."""
    parts = urlsplit(target)
    if "rest_route" in parse_qs(parts.query):
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")) + (
            "?rest_route=/wp/v2/media"
        )
    marker = "/wp-json/"
    if marker in parts.path:
        root = parts.path[: parts.path.index(marker) + len(marker)]
        return urlunsplit((parts.scheme, parts.netloc, root + "wp/v2/media", "", ""))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def connection_condition(
    exc: requests.RequestException, host: str, timeout: tuple[float, float]
) -> Any:
    """A failed request as SiteCondition (no connection at all) or TransientError
    (a connection that was made, then timed out or dropped: the request may have
    done its work)."""
    if isinstance(exc, requests.ConnectTimeout):
        return SiteCondition(
            "unreachable",
            f"cannot connect to WordPress at {host}: no answer within {timeout[0]:g} s",
        )
    if isinstance(exc, requests.exceptions.SSLError) and _tls_setup(exc):
        return SiteCondition("tls", f"TLS with WordPress at {host} failed: {reason(exc)}")
    if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
        return SiteCondition("unreachable", f"cannot connect to WordPress at {host}: {reason(exc)}")
    if isinstance(exc, requests.Timeout):
        return TransientError(f"no answer within {timeout[1]:g} s (timed out)")
    if isinstance(exc, requests.ConnectionError):
        return TransientError(f"connection dropped: {reason(exc)}")
    return TransientError(reason(exc))


def _tls_setup(exc: BaseException) -> bool:
    """A TLS failure in the handshake (a certificate, a protocol): every request would
    meet it. One in the middle of a request (a proxy cutting a large body short) is
    unsure, like any connection dropped."""
    text = str(exc).lower()
    return any(w in text for w in ("certificate", "handshake", "wrong version", "hostname"))


def _never_connected(exc: BaseException) -> bool:
    """Refused, no route, no such host: nothing reached the site."""
    inner: BaseException | None = exc
    for _ in range(10):  # the chain urllib3 and requests wrap a socket error in
        if inner is None:
            break
        if getattr(inner, "errno", None) in _NO_CONNECTION_ERRNOS:
            return True
        if type(inner).__name__ in {"NewConnectionError", "NameResolutionError", "gaierror"}:
            return True
        inner = inner.__cause__ or inner.__context__
    return "Failed to establish a new connection" in str(exc)


_NO_CONNECTION_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}


# Actions on one existing media item: a JSON 403 to them is about that item.
_ITEM_ACTIONS = frozenset({"update", "delete"})


def _is_storage_race(code: str, message: str) -> bool:
    """rest_upload_sideload_error also reports failing to create the month's upload
    directory, which happens when parallel uploads race to create it: worth a retry.
    Only the "file type" wording (English sites) is taken as a refusal of the file."""
    return code == "rest_upload_sideload_error" and "file type" not in message.lower()


def _code(error: tuple[str, str] | None) -> str:
    return f" {error[0]}" if error else ""


def _address(resp: requests.Response) -> str:
    """The address asked, without its query string (which may carry a slug or text)."""
    parts = urlsplit(resp.url or "")
    route = parse_qs(parts.query).get("rest_route")
    query = f"?rest_route={route[0]}" if route else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + query


def one_line(text: str) -> str:
    text = re.sub(r"<[^>]+>", " ", text)  # WordPress messages may carry HTML
    return " ".join(text.split())[:300]


def reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, without URLs' query strings."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    return one_line(re.sub(r"\?[^ ')\"]*", "?…", text))
