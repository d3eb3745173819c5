"""ImageStore: the one object through which imgwatch speaks SQL.

It works the same on SQLite and MySQL/MariaDB. Each part is a module of its own,
all on one engine (db/engine.py): rows by name (images.py), the row writer's upsert
(upsert.py), the upload queue (uploadqueue.py), the media items' words
(mediatext.py), conditions (conditions.py), the scan history (scans.py), and the
rows an operator retries (retries.py).
"""

from __future__ import annotations

from imgwatch.db.conditions import Conditions
from imgwatch.db.images import ImageRows
from imgwatch.db.mediatext import MediaText
from imgwatch.db.retries import Retries
from imgwatch.db.scans import ScanHistory
from imgwatch.db.uploadqueue import UploadQueue
from imgwatch.db.upsert import RowUpserts


class ImageStore(ImageRows, RowUpserts, UploadQueue, MediaText, Conditions, ScanHistory, Retries):
    """The images table and imgwatch's own tables on one database."""
