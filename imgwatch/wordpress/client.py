"""WordPress REST client: probe, find by slug, upload, update, post-process, delete.

Only this module speaks HTTP. Each call either returns what WordPress said or
raises one of the errors wordpress/answers.py sorts answers into: the file was
refused (PermanentError), the site is in a condition no upload can pass
(SiteCondition), or unsure (TransientError). Retries, pauses and row bookkeeping
live in the uploader.

The choices here follow WordPress's REST API as it behaves: raw-body uploads with a
hex Content-MD5, the slug as an idempotency key, a 500 that already created the
attachment (finished with post-process), Basic auth with an Application Password.
Redirects are never followed with the credentials: a moved site is named, not
mistaken for a wrong password.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter

from imgwatch.errors import ConfigError, SiteCondition, TransientError, UploadError
from imgwatch.wordpress.addresses import API_LINK_REL, ApiRoot
from imgwatch.wordpress.answers import (
    AUTH_ADVICE,
    classify,
    connection_condition,
    unexpected_success,
    wp_error,
)

log = logging.getLogger(__name__)

MEDIA_FIELDS = "id,slug,source_url"

# Longest query string of text fields sent with the upload itself (bytes, encoded).
QUERY_FIELDS_MAX = 2000


@dataclass(frozen=True, slots=True)
class Media:
    """An attachment in the media library."""

    id: int
    source_url: str


class MediaGone(Exception):
    """The attachment is not in WordPress any more (a person deleted it)."""


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
        self._agent = {"User-Agent": "imgwatch"}

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
            session.headers.update(self._agent)
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

    @property
    def host(self) -> str:
        return urlsplit(self.api_url).netloc

    def _request(
        self, method: str, route: str, action: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> requests.Response:
        """One request to a route. Redirects are answered, not followed: requests
        would follow them without the credentials, and WordPress would then say the
        password is wrong."""
        url, base_params = self.root.url(route)
        try:
            return self.session.request(
                method,
                url,
                params={**base_params, **(params or {})},
                timeout=self.timeout,
                allow_redirects=False,
                **kw,
            )
        except requests.RequestException as exc:
            err = connection_condition(exc, self.host, self.timeout)
            if isinstance(err, TransientError):
                err = TransientError(f"WordPress {action}: {err}")
            raise err from None

    def _json(self, resp: requests.Response, action: str, expected: str = "JSON") -> Any:
        try:
            return resp.json()
        except ValueError:
            raise unexpected_success(resp, action, expected) from None

    def _failed(self, resp: requests.Response, action: str, body_bytes: int | None = None) -> Any:
        return classify(resp, action, user=self.user, site=self.api_url, body_bytes=body_bytes)

    def _discover(self) -> ApiRoot:
        """Find the API root of a bare site URL: the Link header, else ?rest_route=/.

        Asked without credentials (the site's front page and API index are public),
        following redirects: a site moved to https is found where it now is."""
        site = self.api_url.rstrip("/") + "/"
        try:
            resp = requests.get(
                site, timeout=self.timeout, verify=self._verify, headers=self._agent
            )
        except requests.RequestException as exc:
            raise connection_condition(exc, self.host, self.timeout) from None
        if not 200 <= resp.status_code < 300:
            # A maintenance page, a proxy's error: a condition to wait out, not proof
            # that there is no API.
            raise classify(resp, "discovery", user=self.user, site=self.api_url)
        link = resp.links.get(API_LINK_REL, {}).get("url")
        if link:
            return self._same_site(ApiRoot.from_discovered(link))
        candidate = ApiRoot(resp.url.split("?")[0] if resp.url else site, rest_route=True)
        url, params = candidate.url("/")
        try:
            probe = requests.get(
                url, params=params, timeout=self.timeout, verify=self._verify, headers=self._agent
            )
            if probe.ok and "namespaces" in probe.json():
                return candidate
        except (requests.RequestException, ValueError):
            pass
        raise ConfigError(f"no WordPress REST API found at {self.api_url}")

    def _same_site(self, root: ApiRoot) -> ApiRoot:
        """The discovered root, if it is on the configured host (http may become
        https, never the other way): the credentials go nowhere else."""
        want, got = urlsplit(self.api_url), urlsplit(root.base)
        if got.netloc == want.netloc and got.scheme in {want.scheme, "https"}:
            return root
        raise ConfigError(
            f"WordPress at {self.api_url} says its REST API is at {root.base}; set "
            "IMGWATCH_WP_API_URL to it if that is right"
        )

    # --- the calls ----------------------------------------------------------------

    def probe(self) -> SiteCondition | None:
        """Does the site answer properly now? None if so; else the condition, in words.

        The question is the preflight's: who am I, and may I upload (`users/me`).
        Unsure answers (5xx, timeouts, dropped connections) are conditions here: the
        probe is what decides that the site, not a file, is at fault."""
        try:
            resp = self._request("GET", "/wp/v2/users/me", "probe", params={"context": "edit"})
            if resp.status_code != 200:
                raise self._failed(resp, "probe")
            me = self._json(resp, "probe", "JSON")
        except SiteCondition as cond:
            return cond
        except UploadError as exc:  # unsure, or a refusal no probe should get
            detail = str(exc).removeprefix("WordPress probe: ")
            return SiteCondition("no_answer", f"WordPress is not answering properly ({detail})")
        except ConfigError as exc:  # discovery: no API at a bare site URL, or elsewhere
            return SiteCondition("no_api", str(exc), settings=True)
        caps = me.get("capabilities", {}) if isinstance(me, dict) else None
        if not isinstance(caps, dict):
            return unexpected_success(resp, "probe", "the user's profile")
        if not caps.get("upload_files"):
            return SiteCondition(
                "not_allowed",
                f"WordPress user {self.user!r} may not upload files (needs the upload_files "
                "capability, e.g. the Author role)",
                settings=True,
            )
        return None

    def preflight(self) -> None:
        """At start: wrong settings (password, address, capability) stop the run with
        ConfigError; any other condition is raised for the caller to wait out."""
        condition = self.probe()
        if condition is None:
            return
        if condition.kind == "unauthorized":
            raise ConfigError(
                f"WordPress at {self.api_url} refused user {self.user!r} (401). " + AUTH_ADVICE
            )
        if condition.settings:
            raise ConfigError(str(condition))
        raise condition

    def find_by_slug(self, slug: str) -> Media | None:
        """The attachment with exactly this slug, if any."""
        resp = self._request(
            "GET",
            "/wp/v2/media",
            "lookup",
            params={"slug": slug, "context": "edit", "_fields": MEDIA_FIELDS},
        )
        if resp.status_code != 200:
            raise self._failed(resp, "lookup")
        items = self._json(resp, "lookup", "a list of media")
        if not isinstance(items, list):
            raise unexpected_success(resp, "lookup", "a list of media")
        for item in items:
            if isinstance(item, dict) and item.get("slug") == slug:
                return _media(item)
        return None

    def get(self, media_id: int) -> Media | None:
        resp = self._request("GET", f"/wp/v2/media/{media_id}", "fetch", params={"context": "edit"})
        if resp.status_code == 404 and _is_json_error(resp):
            return None
        if resp.status_code != 200:
            raise self._failed(resp, "fetch")
        return _media(self._json(resp, "fetch", "the media item"))

    def upload(
        self,
        body: IO[bytes],
        *,
        file_name: str,
        mime_type: str,
        md5_hex: str,
        slug: str,
        fields: dict[str, str],
        size: int | None = None,
    ) -> tuple[Media, dict[str, str]]:
        """Create an attachment from a raw body. A 500 that already created one is
        finished. Returns it, and the text fields still to set with update_fields()
        (those too long for the query string)."""
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
            media = _media(self._json(resp, "upload", "201 Created"))
        elif resp.status_code >= 500 and attachment.isdigit():
            # The file is stored; only sub-size generation died. Finish it, never re-upload.
            log.warning(
                "WordPress answered %d after storing media %s; finishing it with post-process",
                resp.status_code,
                attachment,
            )
            media = self.finish(int(attachment))
        elif 200 <= resp.status_code < 300:
            raise unexpected_success(resp, "upload", "201 Created")
        else:
            raise self._failed(resp, "upload", body_bytes=size)
        return media, later

    def update_fields(self, media_id: int, fields: dict[str, str]) -> None:
        """Set title, caption, description, alt text of an attachment in place.
        MediaGone if it is not there any more."""
        resp = self._request("POST", f"/wp/v2/media/{media_id}", "update", json=fields)
        if resp.status_code == 404 and _is_json_error(resp):
            raise MediaGone(f"media {media_id} is not in WordPress any more")
        if resp.status_code != 200:
            raise self._failed(resp, "update")
        self._json(resp, "update", "the media item")

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
                self._failed(resp, "post-process"),
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
        if resp.status_code == 404 and _is_json_error(resp):
            return False
        if resp.status_code != 200:
            raise self._failed(resp, "delete")
        return True


def _is_json_error(resp: requests.Response) -> bool:
    """A 404 from WordPress itself (rest_post_invalid_id …), not from a server in front."""
    error = wp_error(resp)
    return error is not None and error[0] != "rest_no_route"


def _media(item: Any) -> Media:
    try:
        return Media(id=int(item["id"]), source_url=str(item["source_url"]))
    except (KeyError, TypeError, ValueError):
        raise SiteCondition(
            "not_wordpress", "WordPress answered without the media item's id and source_url"
        ) from None
