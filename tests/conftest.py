"""Shared fixtures: the throwaway MariaDB, a fresh database per test on each backend."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from tests.servers import MariaDB, ServerUnavailable, WordPress

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    # In CI a missing server is a broken pipeline, not a reason to pass quietly.
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


class Server(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


def running(server: S, what: str) -> Iterator[S]:
    """server started, for a fixture to yield; stopped after. Where it cannot start,
    the test skips (fails under CI=true), saying `what` is not available."""
    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        _unavailable(f"{what} is not available: {exc}")
    yield server
    server.stop()


def running_mariadb(prefix: str) -> Iterator[MariaDB]:
    """A started throwaway MariaDB for a fixture to yield; stopped and removed after."""
    return running(MariaDB(Path(tempfile.mkdtemp(prefix=prefix))), "MariaDB")


@pytest.fixture
def own_mariadb() -> Iterator[MariaDB]:
    """A MariaDB of the test's own: stopping it must not disturb the shared one."""
    yield from running_mariadb("imgwatch-own-")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    yield from running_mariadb("imgwatch-mariadb-")


@pytest.fixture(scope="session")
def wordpress(mariadb: MariaDB) -> Iterator[WordPress]:
    site = WordPress(Path(tempfile.mkdtemp(prefix="imgwatch-wordpress-")), mariadb)
    try:
        site.start()
    except ServerUnavailable as exc:
        site.stop()
        _unavailable(f"WordPress is not available: {exc}")
    yield site
    site.stop()


@pytest.fixture
def live_wordpress(wordpress: WordPress) -> WordPress:
    """The shared WordPress, serving again if an earlier test stopped it."""
    if wordpress.process is None or wordpress.process.poll() is not None:
        wordpress.serve()
    return wordpress


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL:
    """A URL to an empty database, once for SQLite and once for the real MariaDB."""
    if request.param == "sqlite":
        return URL.create("sqlite", database=str(tmp_path / "imgwatch.db"))
    server: MariaDB = request.getfixturevalue("mariadb")
    return server.create_database()


@pytest.fixture
def store(db_url: URL) -> Iterator[ImageStore]:
    s = ImageStore(db_url)
    s.open()
    yield s
    s.close()


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the IMGWATCH_ settings they set, and no env file from the cwd."""
    for key in list(os.environ):
        if key.startswith("IMGWATCH_") or key in {"STATE_DIRECTORY", "JOURNAL_STREAM"}:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
