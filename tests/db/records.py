"""Rows for the database tests: a record to write, and the original service's table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import URL

from imgwatch.db.schema import images
from imgwatch.db.store import ImageStore
from imgwatch.model import ImageRecord, Status, UploadJob

# The original service's DDL, as its documentation gives it (MySQL flavour).
ORIGINAL_DDL = """
CREATE TABLE images (
    id INT AUTO_INCREMENT PRIMARY KEY,
    file_name VARCHAR(255) NOT NULL UNIQUE,
    title VARCHAR(255),
    description TEXT,
    wp_url VARCHAR(255)
)
"""
ORIGINAL_DDL_SQLITE = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name VARCHAR(255) NOT NULL UNIQUE,
    title VARCHAR(255),
    description TEXT,
    wp_url VARCHAR(255)
)
"""
ORIGINAL_ROWS: list[dict[str, Any]] = [
    {"file_name": "a.jpg", "title": "Sunset", "description": "Edited", "wp_url": "https://x/a.jpg"},
    {"file_name": "b.png", "title": "b.png", "description": "Image description", "wp_url": None},
]


def record(name: str, **fields: Any) -> ImageRecord:
    base: dict[str, Any] = {
        "file_name": name,
        "title": name,
        "description": "Image description",
        "status": Status.DONE,
        "sha256": "0" * 64,
        "size_bytes": 10,
        "mtime_ns": 1_700_000_000_000_000_000,
        "mime_type": "image/jpeg",
        "width": 3,
        "height": 2,
    }
    base.update(fields)
    return ImageRecord(**base)


def make_original_table(url: URL) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        ddl = ORIGINAL_DDL_SQLITE if url.get_backend_name() == "sqlite" else ORIGINAL_DDL
        conn.execute(text(ddl))
        for row in ORIGINAL_ROWS:
            conn.execute(
                text(
                    "INSERT INTO images (file_name, title, description, wp_url) "
                    "VALUES (:file_name, :title, :description, :wp_url)"
                ),
                row,
            )
    engine.dispose()


def set_row(store: ImageStore, file_name: str, /, **values: Any) -> None:
    """Change a row behind the store's back, as another process or a person would."""
    with store.engine.begin() as conn:
        conn.execute(update(images).where(images.c.file_name == file_name).values(**values))


def job_of(store: ImageStore, file_name: str) -> UploadJob:
    """The row as an upload job, whether it is due or not."""
    c = images.c
    query = select(
        c.id,
        c.file_name,
        c.sha256,
        c.mime_type,
        c.title,
        c.description,
        c.wp_media_id,
        c.attempts,
        c.caption,
        c.alt_text,
    ).where(c.file_name == file_name)
    with store.engine.connect() as conn:
        return UploadJob._make(conn.execute(query).one())
