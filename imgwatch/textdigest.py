"""A short fingerprint of a photo's words (title, description, caption, alt text).

A row keeps two of them: what its media item in WordPress was last given
(`wp_text_digest`), and what the file itself said when last read
(`file_text_digest`). Each is four 16-hex-digit parts, one per field, so that the
fields that changed can be told apart: only those are sent to WordPress, and a
field a person edited in the database is told from one that still says what the
file said. The database computes the same parts itself (SHA2() on MySQL, a
function imgwatch registers on SQLite), so changes are found by a query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

TEXT_FIELDS = ("title", "description", "caption", "alt_text")
PART = 16  # hex digits per field

# Not a digest: "what WordPress has is unknown, send every field" (a linked media
# item, `imgwatch retry FILE`, text that could not be set after an upload).
UNKNOWN = ""


def field_digest(value: object) -> str:
    """One field's part: an empty field and a missing one are the same."""
    part = _parts.get(value)
    if part is None:
        part = hashlib.sha256(as_text(value).encode("utf-8")).hexdigest()[:PART]
        if len(_parts) < _PARTS_KEPT:
            _parts[value] = part
    return part


def as_text(value: object) -> str:
    """A text column's value as text, whatever a person stored there: SQLite keeps a
    blob or a number as it was given."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def text_digest(*values: object) -> str:
    """The four fields' parts, in TEXT_FIELDS order."""
    return "".join(map(field_digest, values))


# Parts already computed: most rows share their description (the default), caption
# and alt text (none), and every file read computes a digest (a bulk import reads
# tens of thousands a second). Bounded: the first values seen are kept.
_PARTS_KEPT = 4096
_parts: dict[object, str] = {}


def changed_fields(sent: str, values: Sequence[str | None]) -> list[str]:
    """The fields whose value differs from what `sent` says was sent; all of them
    when that is unknown."""
    changed = []
    for index, (name, value) in enumerate(zip(TEXT_FIELDS, values, strict=True)):
        if sent[index * PART : (index + 1) * PART] != field_digest(value):
            changed.append(name)
    return changed
