"""The media items' words: rows whose title, description, caption or alt text
differ from what their media item was last given (textdigest.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, select, update

from imgwatch.db.engine import Database
from imgwatch.db.schema import images, text_digest_sql
from imgwatch.model import Status, TextUpdate
from imgwatch.textdigest import as_text


def _text_or_none(value: object) -> str | None:
    return None if value is None else as_text(value)


class MediaText(Database):
    """Text updates due, and what was sent."""

    def text_updates_due(
        self, *, names: Sequence[str] | None = None, after_id: int = 0, limit: int = 500
    ) -> list[TextUpdate]:
        """Rows whose words differ from what their media item was last given, in id
        order from after_id. Of rows sharing one media item (identical content under
        two names) only the first one still there speaks for it: the others' words
        stay in their rows, and one of them takes over when the first is gone."""
        if "wp_text_digest" in self.absent_columns:
            return []
        c = images.c
        earlier = images.alias("earlier")
        first = ~exists().where(
            earlier.c.wp_media_id == c.wp_media_id,
            earlier.c.id < c.id,
            earlier.c.status == Status.DONE,
        )
        query = (
            select(
                c.id,
                c.file_name,
                c.wp_media_id,
                c.title,
                c.description,
                c.caption,
                c.alt_text,
                c.wp_text_digest,
            )
            .where(
                c.status == Status.DONE,
                c.id > after_id,
                c.wp_media_id.is_not(None),
                c.wp_url.is_not(None),
                c.wp_text_digest.is_not(None),
                c.wp_text_digest != text_digest_sql(images),
                first,
            )
            .order_by(c.id)
            .limit(limit)
        )
        if names is not None:
            query = query.where(c.file_name.in_(list(names)))
        with self.guard("reading text updates due"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        # Words as text, whatever a person stored in the columns (SQLite keeps blobs).
        return [
            TextUpdate(
                row[0],
                row[1],
                row[2],
                _text_or_none(row[3]),
                _text_or_none(row[4]),
                _text_or_none(row[5]),
                _text_or_none(row[6]),
                row[7],
            )
            for row in rows
        ]

    def record_text_sent(self, row_id: int, media_id: int, digest: str) -> bool:
        """The media item was given the words this digest stands for."""
        c = images.c
        stmt = (
            update(images)
            .where(c.id == row_id, c.wp_media_id == media_id)
            .values(wp_text_digest=digest)
        )
        return self.transaction("recording text sent", lambda conn: conn.execute(stmt).rowcount > 0)

    def baseline_text_digests(self) -> int:
        """Rows uploaded before imgwatch kept what it sent: their words as they are now
        count as what WordPress has (nothing is sent for them until they change)."""
        if "wp_text_digest" in self.absent_columns:
            return 0
        c = images.c
        stmt = (
            update(images)
            .where(c.wp_text_digest.is_(None), c.wp_media_id.is_not(None), c.status == Status.DONE)
            .values(wp_text_digest=text_digest_sql(images))
        )
        return self.transaction(
            "recording what WordPress has", lambda conn: conn.execute(stmt).rowcount
        )
