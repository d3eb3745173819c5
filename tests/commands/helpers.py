"""What the command tests share: imgwatch run as a person runs it, files, the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL

from tests.daemonproc import daemon_env
from tests.imagefiles import write_image
from tests.runner import run


def imgwatch(*args: str, image_dir: Path, db: URL, **env: str) -> Any:
    result = run(*args, env={**daemon_env(image_dir, db), **env}, cwd=image_dir.parent)
    secret = db.password
    if secret:
        assert str(secret) not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def three_files(image_dir: Path) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "sub" / "b.png")
    (image_dir / "bad.gif").write_text("hello")


def tables(db: URL) -> set[str]:
    engine = create_engine(db)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def image_columns(db: URL) -> set[str]:
    engine = create_engine(db)
    try:
        return {c["name"] for c in inspect(engine).get_columns("images")}
    finally:
        engine.dispose()
