"""Addresses: where a site's REST routes live, and the name a file is uploaded under."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from imgwatch.errors import ConfigError

API_LINK_REL = "https://api.w.org/"
# WordPress picks the stored type from the name's extension, so it must match the content.
EXTENSION_FOR_MIME = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
}


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
