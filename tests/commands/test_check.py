"""`imgwatch check` as a person runs it: real processes, both databases and WordPress."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.commands import check as checkup
from imgwatch.config import load_settings
from tests.commands.helpers import imgwatch, tables, three_files
from tests.runner import run
from tests.servers import WordPress
from tests.wordpress.test_uploader import wp_env


def test_check_passes_and_says_what_would_happen(image_dir: Path, db_url: URL) -> None:
    three_files(image_dir)
    (image_dir / "one" / "two").mkdir(parents=True)
    result = imgwatch("check", image_dir=image_dir, db=db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ok: settings: valid" in out
    assert f"ok: image directory: {image_dir.resolve()} is a readable directory" in out
    assert "the daemon would create table images; create table imgwatch_scans" in out
    if db_url.password:
        assert "***" in out  # the password is masked
    assert "ok: WordPress: not configured" in out
    assert "ok: watch: inotify on 4 directory(ies)" in out  # root, sub, one, one/two
    assert "would read 3 new and 0 changed file(s), leave 0 unchanged, mark 0 row(s)" in out
    assert out.endswith("check: ok\n")
    assert tables(db_url) == set()  # checking changed nothing


def test_check_with_wordpress(image_dir: Path, db_url: URL, live_wordpress: WordPress) -> None:
    result = imgwatch("check", image_dir=image_dir, db=db_url, **wp_env(live_wordpress))
    assert result.returncode == 0, result.stdout
    assert "accepts uploads from user 'uploader'" in result.stdout
    bad = wp_env(live_wordpress, IMGWATCH_WP_PASSWORD="wrong pass word")
    refused = imgwatch("check", image_dir=image_dir, db=db_url, **bad)
    assert refused.returncode == 78
    assert "problem: WordPress at" in refused.stdout and "refused user 'uploader'" in refused.stdout
    assert "wrong pass word" not in refused.stdout + refused.stderr
    assert refused.stdout.endswith("check: failed\n")


def test_a_moved_site_is_named_by_check_and_stops_the_daemon_at_start(
    image_dir: Path, tmp_path: Path, live_wordpress: WordPress
) -> None:
    from tests.faultproxy import FaultProxy

    db = URL.create("sqlite", database=str(tmp_path / "moved.db"))
    proxy = FaultProxy(live_wordpress.url)
    proxy.mode, proxy.redirect_to = "redirect301", live_wordpress.url
    try:
        env = wp_env(live_wordpress, IMGWATCH_WP_API_URL=proxy.url + "/wp-json/wp/v2/media")
        said = (
            f"WordPress at {proxy.url}/wp-json/wp/v2/media redirects to "
            f"{live_wordpress.url}/wp-json/wp/v2/media; set IMGWATCH_WP_API_URL to it"
        )
        checked = imgwatch("check", image_dir=image_dir, db=db, **env)
        assert checked.returncode == 78 and f"problem: {said}\n" in checked.stdout
        daemon = imgwatch(image_dir=image_dir, db=db, **env)  # the daemon, at start
        assert daemon.returncode == 78 and said in daemon.stderr
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"IMGWATCH_DB_URL": "mysql+pymysql://u:pw-secret@127.0.0.1:1/x"}, "is unreachable"),
        ({"IMGWATCH_IMAGE_DIR": "/no/such/dir"}, "does not exist"),
        (
            {
                "IMGWATCH_WP_API_URL": "http://127.0.0.1:1/wp-json/wp/v2/media",
                "IMGWATCH_WP_USER": "u",
                "IMGWATCH_WP_PASSWORD": "pw-secret",
                "IMGWATCH_WP_CONNECT_TIMEOUT": "2",
            },
            "cannot connect to WordPress at 127.0.0.1:1",
        ),
    ],
)
def test_check_stops_at_the_first_problem_with_78(
    image_dir: Path, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = run("check", env={"IMGWATCH_IMAGE_DIR": str(image_dir), **env}, cwd=tmp_path)
    assert result.returncode == 78, result.stdout + result.stderr
    assert "problem: " in result.stdout and expected in result.stdout
    assert "pw-secret" not in result.stdout + result.stderr
    assert result.stdout.endswith("check: failed\n")


def test_check_compares_the_tree_with_the_inotify_limit(
    image_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(5):
        (image_dir / f"d{i}").mkdir()
    monkeypatch.setattr(checkup, "read_limit", lambda name: 4)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    settings = load_settings({"image_dir": image_dir, "db_url": url, "watch_mode": "inotify"})
    assert checkup.run(settings) == 78
    out = capsys.readouterr().out
    assert "the tree has 6 directories but fs.inotify.max_user_watches is 4" in out
    assert "sysctl fs.inotify.max_user_watches=12" in out
    assert (
        not os.path.exists(tmp_path / "x.db")
        or tables(URL.create("sqlite", database=str(tmp_path / "x.db"))) == set()
    )
