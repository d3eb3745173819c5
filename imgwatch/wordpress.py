"""WordPress REST client: preflight, find by slug, upload, post-process, delete.

Only this module speaks HTTP. Each call either returns what WordPress said or
raises TransientError / PermanentError with a one-line reason; retries and
row bookkeeping live in the uploader. Facts behind the choices here are in
the design notes (WORDPRESS.md): raw-body uploads, hex Content-MD5, slug as an
idempotency key, the 500-with-attachment-id case.
"""

from __future__ import annotations

import email.utils
import logging
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from imgwatch.errors import ConfigError, PermanentError, TransientError, UploadError

log = logging.getLogger(__name__)

API_LINK_REL = "https://api.w.org/"
# 5xx codes that mean "this file will never be accepted", not "try later".
REFUSED_FILE_CODES = frozenset({"rest_upload_sideload_error", "rest_upload_unknown_error"})
# WordPress picks the stored type from the name's extension, so it must match the content.
EXTENSION_FOR_MIME = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
}
# 4xx codes that are worth another try: the body changed on disk while it was being sent.
RETRY_CODES = frozenset({"rest_upload_hash_mismatch"})
MEDIA_FIELDS = "id,slug,source_url,missing_image_sizes"
AUTH_ADVICE = (
    "WordPress accepts only an Application Password over the REST API, not the login "
    "password: create one under Users -> Profile -> Application Passwords (WordPress 5.6+, "
    "site on HTTPS) and set it as IMGWATCH_WP_PASSWORD"
)


# Longest query string of text fields sent with the upload itself (bytes, encoded).
QUERY_FIELDS_MAX = 2000


@dataclass(frozen=True, slots=True)
class Media:
    """An attachment in the media library."""

    id: int
    source_url: str
    missing_image_sizes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiRoot:
    """Where routes live: `https://site/wp-json/` + route, or `https://site/?rest_route=/route`."""

    base: str
    rest_route: bool

    def url(self, route: str) -> tuple[str, dict[str, str]]:
        route = route.strip("/")
        if self.rest_route:
            return self.base, {"rest_route": "/" + route}
        return self.base + route, {}

    @classmethod
    def from_setting(cls, value: str) -> ApiRoot | None:
        """The root named by an endpoint URL in either form; None for a bare site URL."""
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError("IMGWATCH_WP_API_URL must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ConfigError(
                "IMGWATCH_WP_API_URL must not carry credentials: use IMGWATCH_WP_USER/_PASSWORD"
            )
        route = parse_qs(parts.query).get("rest_route")
        if route:
            return cls(urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")), True)
        marker = "/wp-json/"
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        if marker in path:
            root_path = path[: path.index(marker) + len(marker)]
            return cls(urlunsplit((parts.scheme, parts.netloc, root_path, "", "")), False)
        return None

    @classmethod
    def from_discovered(cls, url: str) -> ApiRoot:
        found = cls.from_setting(url)
        if found is not None:
            return found
        return cls(url if url.endswith("/") else url + "/", False)


def upload_file_name(file_name: str, mime_type: str) -> str:
    """A plain ASCII name for Content-Disposition, with the extension of the real content.

    WordPress's header parser knows no quoting or `filename*`, so anything beyond
    letters, digits, dot, dash and underscore is replaced; it sanitises again anyway.
    """
    base = file_name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    ascii_stem = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_stem).strip(".-") or "image"
    return ascii_stem[:120] + EXTENSION_FOR_MIME.get(mime_type, ".jpg")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(resp: requests.Response, action: str) -> TransientError | PermanentError:
    """Classify a non-success answer; the message carries WordPress's code and words."""
    code, message = _wp_error(resp)
    detail = f"{resp.status_code} {code}: {message}" if code else f"{resp.status_code} {message}"
    text = f"WordPress {action}: {detail}".strip()
    status = resp.status_code
    refused = code in REFUSED_FILE_CODES and not _is_storage_race(code, message)
    if status in {408, 429} or code in RETRY_CODES or (status >= 500 and not refused):
        return TransientError(text, parse_retry_after(resp.headers.get("Retry-After")))
    return PermanentError(text)


def _is_storage_race(code: str, message: str) -> bool:
    """rest_upload_sideload_error also reports failing to create the month's upload
    directory, which happens when parallel uploads race to create it: worth a retry.
    Only the "file type" wording (English sites) is taken as a refusal of the file."""
    return code == "rest_upload_sideload_error" and "file type" not in message.lower()


def _wp_error(resp: requests.Response) -> tuple[str, str]:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        return str(body.get("code")), _one_line(str(body.get("message", "")))
    return "", _one_line(resp.reason or "") or "(no message)"


def _one_line(text: str) -> str:
    text = re.sub(r"<[^>]+>", " ", text)  # WordPress messages may carry HTML
    return " ".join(text.split())[:300]


class MediaClient:
    """The media endpoints of one WordPress site, with Basic auth (Application Password)."""

    def __init__(
        self,
        api_url: str,
        user: str,
        password: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ca_bundle: str | None = None,
        pool_size: int = 4,
    ) -> None:
        self.api_url = api_url
        self._root = ApiRoot.from_setting(api_url)
        self.user = user
        self._auth = (user, password)
        self.timeout = (connect_timeout, read_timeout)
        self._verify: bool | str = ca_bundle or True
        self._pool_size = pool_size
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"MediaClient({self.api_url!r})"

    @property
    def session(self) -> requests.Session:
        """One keep-alive session per worker thread."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            session.verify = self._verify
            session.headers["User-Agent"] = "imgwatch"
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()

    # --- plumbing -----------------------------------------------------------------

    @property
    def root(self) -> ApiRoot:
        if self._root is None:
            self._root = self._discover()
        return self._root

    def _request(
        self, method: str, route: str, action: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> requests.Response:
        url, base_params = self.root.url(route)
        try:
            return self.session.request(
                method, url, params={**base_params, **(params or {})}, timeout=self.timeout, **kw
            )
        except requests.Timeout as exc:
            raise TransientError(f"WordPress {action}: timed out ({type(exc).__name__})") from None
        except requests.ConnectionError as exc:
            raise TransientError(f"WordPress {action}: cannot connect: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise TransientError(f"WordPress {action}: {_reason(exc)}") from None

    def _json(self, resp: requests.Response, action: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise TransientError(f"WordPress {action}: answer is not JSON") from None

    def _discover(self) -> ApiRoot:
        """Find the API root of a bare site URL: the Link header, else ?rest_route=/."""
        site = self.api_url.rstrip("/") + "/"
        try:
            resp = self.session.get(site, timeout=self.timeout, allow_redirects=True)
        except requests.RequestException as exc:
            raise TransientError(f"WordPress discovery: cannot connect: {_reason(exc)}") from None
        link = resp.links.get(API_LINK_REL, {}).get("url")
        if link:
            return ApiRoot.from_discovered(link)
        candidate = ApiRoot(site, rest_route=True)
        url, params = candidate.url("/")
        try:
            probe = self.session.get(url, params=params, timeout=self.timeout)
            if probe.ok and "namespaces" in probe.json():
                return candidate
        except (requests.RequestException, ValueError):
            pass
        raise ConfigError(f"no WordPress REST API found at {self.api_url}")

    # --- the calls ----------------------------------------------------------------

    def preflight(self) -> None:
        """Check the credentials and the upload_files capability; ConfigError if wrong."""
        resp = self._request("GET", "/wp/v2/users/me", "preflight", params={"context": "edit"})
        if resp.status_code == 401:
            raise ConfigError(
                f"WordPress at {self.api_url} refused user {self.user!r} (401). " + AUTH_ADVICE
            )
        if resp.status_code == 404:
            raise ConfigError(f"no WordPress REST API at {self.api_url} (404)")
        if not resp.ok:
            err = error_from_response(resp, "preflight")
            if isinstance(err, PermanentError):
                raise ConfigError(str(err))
            raise err
        me = self._json(resp, "preflight")
        caps = me.get("capabilities", {}) if isinstance(me, dict) else {}
        if not caps.get("upload_files"):
            raise ConfigError(
                f"WordPress user {self.user!r} may not upload files "
                "(needs the upload_files capability, e.g. the Author role)"
            )

    def find_by_slug(self, slug: str) -> Media | None:
        """The attachment with exactly this slug, if any."""
        resp = self._request(
            "GET",
            "/wp/v2/media",
            "lookup",
            params={"slug": slug, "context": "edit", "_fields": MEDIA_FIELDS},
        )
        if not resp.ok:
            raise error_from_response(resp, "lookup")
        items = self._json(resp, "lookup")
        for item in items if isinstance(items, list) else []:
            if item.get("slug") == slug:
                return _media(item)
        return None

    def get(self, media_id: int) -> Media | None:
        resp = self._request("GET", f"/wp/v2/media/{media_id}", "fetch", params={"context": "edit"})
        if resp.status_code == 404:
            return None
        if not resp.ok:
            raise error_from_response(resp, "fetch")
        return _media(self._json(resp, "fetch"))

    def upload(
        self,
        body: IO[bytes],
        *,
        file_name: str,
        mime_type: str,
        md5_hex: str,
        slug: str,
        fields: dict[str, str],
    ) -> Media:
        """Create an attachment from a raw body. A 500 that already created one is finished."""
        headers = {
            "Content-Type": mime_type,
            "Content-Disposition": f'attachment; filename="{file_name}"',
            "Content-MD5": md5_hex,
        }
        given = {k: v for k, v in fields.items() if v}
        # The fields ride in the query string, but a long description or caption
        # would pass a server's request-line limit (8 KiB on Apache: 414): those go
        # in a second request, as a JSON body.
        later: dict[str, str] = {}
        if len(urlencode(given)) > QUERY_FIELDS_MAX:
            later, given = given, {}
        params = {"slug": slug, **given}
        resp = self._request(
            "POST", "/wp/v2/media", "upload", params=params, data=body, headers=headers
        )
        attachment = resp.headers.get("X-WP-Upload-Attachment-ID", "")
        if resp.status_code == 201:
            media = _media(self._json(resp, "upload"))
        elif resp.status_code >= 500 and attachment.isdigit():
            # The file is stored; only sub-size generation died. Finish it, never re-upload.
            log.warning(
                "WordPress answered %d after storing media %s; finishing it with post-process",
                resp.status_code,
                attachment,
            )
            media = self.finish(int(attachment))
        else:
            raise error_from_response(resp, "upload")
        if later:
            self._set_fields(media.id, later)
        return media

    def _set_fields(self, media_id: int, fields: dict[str, str]) -> None:
        """Title, caption ... of a new attachment. Its file is in already: a failure
        here is a warning, not a failed upload (which would only find the media
        by its slug next time and leave it as it is)."""
        try:
            resp = self._request("POST", f"/wp/v2/media/{media_id}", "update", json=fields)
            if not resp.ok:
                raise error_from_response(resp, "update")
        except UploadError as exc:
            log.warning("uploaded media %d, but could not set its text: %s", media_id, exc)

    def finish(self, media_id: int, tries: int = 3) -> Media:
        """Run post-processing (sub-sizes) on an attachment whose upload answered 500."""
        for attempt in range(1, tries + 1):
            resp = self._request(
                "POST",
                f"/wp/v2/media/{media_id}/post-process",
                "post-process",
                data={"action": "create-image-subsizes"},
            )
            if resp.ok:
                break
            log.warning(
                "WordPress post-process of media %d failed (try %d of %d): %s",
                media_id,
                attempt,
                tries,
                error_from_response(resp, "post-process"),
            )
        media = self.get(media_id)
        if media is None:
            raise TransientError(f"WordPress upload: media {media_id} vanished after a 500")
        return media

    def delete(self, media_id: int) -> bool:
        """Delete an attachment and its files; False if it was already gone."""
        resp = self._request(
            "DELETE", f"/wp/v2/media/{media_id}", "delete", params={"force": "true"}
        )
        if resp.status_code == 404:
            return False
        if not resp.ok:
            raise error_from_response(resp, "delete")
        return True


def _media(item: Any) -> Media:
    try:
        return Media(
            id=int(item["id"]),
            source_url=str(item["source_url"]),
            missing_image_sizes=tuple(item.get("missing_image_sizes") or ()),
        )
    except (KeyError, TypeError, ValueError):
        raise TransientError("WordPress answered without id/source_url") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, without URLs' query strings."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    return _one_line(re.sub(r"\?[^ ')\"]*", "?…", text))
