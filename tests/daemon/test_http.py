"""The optional HTTP listener: Prometheus metrics and the original service's health
answer, from a real daemon process on SQLite, MariaDB and WordPress."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from imgwatch.config import listen_address
from imgwatch.daemon.http import DatabaseCheck
from imgwatch.model import Status
from tests.daemonproc import daemon_env, start, wait_for, wait_rows, wp_settings
from tests.imagefiles import write_image
from tests.runner import run
from tests.servers import MariaDB, WordPress, free_port


def get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_status(port: int, path: str, code: int) -> str:
    """The body of the first answer to path with this status code."""
    answers: list[tuple[int, str]] = []

    def answered() -> bool:
        answers.append(get(port, path))
        return answers[-1][0] == code

    wait_for(answered, 30, f"{path} to answer {code}")
    return answers[-1][1]


def metric(text: str, name: str) -> float | None:
    """One sample's value from the Prometheus text format, by its full name+labels."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_health_and_metrics(tmp_path: Path, image_dir: Path, db_url: URL) -> None:
    port = free_port()
    write_image(image_dir / "before.jpg")
    with start(tmp_path, image_dir, db_url, metrics_listen=f"127.0.0.1:{port}") as daemon:
        daemon.wait_log(r"startup reconcile: 1 new")
        for path in ("/", "/healthz"):
            assert get(port, path) == (200, '{"status": "Server is running"}')
        write_image(image_dir / "new.png")
        (image_dir / "bad.gif").write_text("not a gif")
        (image_dir / "empty.jpg").write_bytes(b"")
        wait_rows(db_url, lambda r: {"new.png", "bad.gif", "empty.jpg"} <= set(r))
        # Counted just after the commit that made the rows visible: wait for it.
        wanted = {
            'imgwatch_files_total{outcome="recorded",reason=""}': 2,
            'imgwatch_files_total{outcome="rejected",reason="not_an_image"}': 1,
            'imgwatch_files_total{outcome="rejected",reason="empty"}': 1,
            "imgwatch_queue_depth": 0,
        }

        def counted() -> bool:
            text = get(port, "/metrics")[1]
            return all(metric(text, name) == value for name, value in wanted.items())

        wait_for(counted, 30, "the counts")
        status, text = get(port, "/metrics")
        assert status == 200
        assert metric(text, 'imgwatch_files_total{outcome="recorded",reason=""}') == 2
        assert metric(text, 'imgwatch_files_total{outcome="rejected",reason="not_an_image"}') == 1
        assert metric(text, 'imgwatch_files_total{outcome="rejected",reason="empty"}') == 1
        assert metric(text, 'imgwatch_reconciles_total{reason="startup"}') == 1
        assert metric(text, "imgwatch_last_scan_duration_seconds") is not None
        assert metric(text, "imgwatch_queue_depth") == 0
        assert metric(text, "imgwatch_database_up") == 1
        assert metric(text, "imgwatch_watching") == 1
        assert metric(text, "imgwatch_event_overflows_total") == 0
        assert "imgwatch_wordpress_up" not in text  # no WordPress configured
        assert "_created" not in text
        assert get(port, "/nope")[0] == 404
        assert get(port, "/", method="POST")[0] == 405
        assert daemon.stop() == 0
    assert f"metrics and health checks on http://127.0.0.1:{port}/" in daemon.log()
    if db_url.password:
        assert str(db_url.password) not in text + daemon.log()


def test_unhealthy_while_the_image_directory_is_gone(tmp_path: Path, image_dir: Path) -> None:
    port = free_port()
    db = URL.create("sqlite", database=str(tmp_path / "x.db"))
    with start(tmp_path, image_dir, db, metrics_listen=f"127.0.0.1:{port}") as daemon:
        daemon.wait_log(r"startup reconcile")
        shutil.rmtree(image_dir)
        body = wait_status(port, "/healthz", 503)
        answer = json.loads(body)
        assert answer["status"] == "unhealthy" and str(image_dir) in answer["reason"]
        assert metric(get(port, "/metrics")[1], "imgwatch_watching") == 0
        image_dir.mkdir()
        wait_status(port, "/", 200)
        assert daemon.stop() == 0


def test_unhealthy_while_the_database_is_down(
    tmp_path: Path, image_dir: Path, own_mariadb: MariaDB
) -> None:
    port = free_port()
    db = own_mariadb.create_database()
    with start(tmp_path, image_dir, db, metrics_listen=f"127.0.0.1:{port}") as daemon:
        daemon.wait_log(r"startup reconcile")
        assert get(port, "/")[0] == 200
        own_mariadb.halt()
        try:
            body = wait_status(port, "/", 503)
            reason = json.loads(body)["reason"]
            assert "is unreachable" in reason and str(db.password) not in reason
            write_image(image_dir / "during.jpg")  # a write fails: database_up goes to 0
            wait_for(
                lambda: metric(get(port, "/metrics")[1], "imgwatch_database_up") == 0,
                30,
                "database_up 0",
            )
        finally:
            own_mariadb.resume()
        wait_status(port, "/", 200)
        wait_rows(db, lambda r: r.get("during.jpg", {}).get("status") == Status.DONE)
        assert metric(get(port, "/metrics")[1], "imgwatch_database_up") == 1
        assert daemon.stop() == 0


def test_upload_metrics(
    tmp_path: Path, image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    port = free_port()
    db = mariadb.create_database()
    settings = {**wp_settings(live_wordpress), "metrics_listen": f"127.0.0.1:{port}"}
    with start(tmp_path, image_dir, db, **settings) as daemon:
        write_image(image_dir / "a.jpg")
        write_image(image_dir / "b.png")
        wait_rows(db, lambda r: len(r) == 2 and all(x["wp_url"] for x in r.values()))
        wait_for(
            lambda: metric(get(port, "/metrics")[1], "imgwatch_upload_duration_seconds_count") == 2,
            30,
            "two uploads counted",
        )
        text = get(port, "/metrics")[1]
        done = metric(text, 'imgwatch_uploads_total{outcome="done"}') or 0
        reused = metric(text, 'imgwatch_uploads_total{outcome="reused"}') or 0
        assert done + reused == 2
        assert metric(text, "imgwatch_upload_duration_seconds_count") == 2
        assert (metric(text, "imgwatch_upload_duration_seconds_sum") or 0) > 0
        assert metric(text, 'imgwatch_wordpress_up{reason=""}') == 1
        assert metric(text, "imgwatch_upload_retries_total") == 0
        assert daemon.stop() == 0


def test_off_by_default(tmp_path: Path, image_dir: Path) -> None:
    db = URL.create("sqlite", database=str(tmp_path / "x.db"))
    with start(tmp_path, image_dir, db) as daemon:
        daemon.wait_log(r"startup reconcile")
        assert daemon.stop() == 0
    assert "metrics and health checks" not in daemon.log()


def test_a_port_in_use_is_a_configuration_error(tmp_path: Path, image_dir: Path) -> None:
    port = free_port()
    db = URL.create("sqlite", database=str(tmp_path / "x.db"))
    with start(tmp_path, image_dir, db, metrics_listen=f"127.0.0.1:{port}") as daemon:
        daemon.wait_log(r"startup reconcile")
        env = daemon_env(image_dir, db, metrics_listen=f"127.0.0.1:{port}")
        second = run(env=env, cwd=tmp_path)
        assert second.returncode == 78
        assert f"cannot listen on 127.0.0.1:{port} (IMGWATCH_METRICS_LISTEN)" in second.stderr
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    assert listen_address(value) == expected


@pytest.mark.parametrize("value", ["9464", ":9464", "host:", "host:0", "host:70000", "::1:9464"])
def test_bad_listen_addresses_exit_78(tmp_path: Path, image_dir: Path, value: str) -> None:
    result = run("check", "--image-dir", str(image_dir), "--metrics-listen", value, cwd=tmp_path)
    assert result.returncode == 78
    assert "metrics_listen" in result.stderr.lower() or "METRICS_LISTEN" in result.stderr


def test_the_database_is_asked_at_most_every_five_seconds() -> None:
    now = [0.0]
    answers = iter(["down", None, None])
    calls = []

    def ping() -> str | None:
        calls.append(now[0])
        return next(answers)

    check = DatabaseCheck(ping, clock=lambda: now[0])
    assert check() == "down"
    now[0] = 4.9
    assert check() == "down" and calls == [0.0]
    now[0] = 5.0
    assert check() is None and calls == [0.0, 5.0]
