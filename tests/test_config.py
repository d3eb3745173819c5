"""Settings: environment, env files, URL building (with hostile passwords), defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from imgwatch.config import load_settings
from imgwatch.errors import ConfigError
from tests.servers import HOSTILE_PASSWORD


def test_image_dir_is_required() -> None:
    with pytest.raises(ConfigError, match="IMGWATCH_IMAGE_DIR is required"):
        load_settings({})


def test_defaults_match_the_original_service(tmp_path: Path) -> None:
    s = load_settings({"image_dir": str(tmp_path)})
    assert s.extensions == (".jpg", ".jpeg", ".png", ".gif")
    assert s.default_description == "Image description"
    assert s.db_port == 3306


def test_default_database_is_sqlite_in_cwd(tmp_path: Path) -> None:
    url = load_settings({"image_dir": "/x"}).database_url()
    assert url.get_backend_name() == "sqlite"
    assert url.database == str(tmp_path / "imgwatch.db")


def test_default_database_under_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/imgwatch:/var/lib/other")
    url = load_settings({"image_dir": "/x"}).database_url()
    assert url.database == "/var/lib/imgwatch/imgwatch.db"


@pytest.mark.parametrize("password", [HOSTILE_PASSWORD, "a@b", "c:d", "e/f", "g%2Fh", "%"])
def test_discrete_fields_build_a_url_that_round_trips(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("IMGWATCH_IMAGE_DIR", "/x")
    monkeypatch.setenv("IMGWATCH_DB_HOST", "db.example")
    monkeypatch.setenv("IMGWATCH_DB_USER", "imgwatch")
    monkeypatch.setenv("IMGWATCH_DB_PASSWORD", password)
    monkeypatch.setenv("IMGWATCH_DB_NAME", "image_database")
    url = load_settings({}).database_url()
    assert url.drivername == "mysql+pymysql"
    assert (url.host, url.port, url.username, url.password) == (
        "db.example",
        3306,
        "imgwatch",
        password,
    )
    # Rendered and parsed again (as a URL in a file would be) it is the same password.
    assert make_url(url.render_as_string(hide_password=False)).password == password
    assert url.query["charset"] == "utf8mb4"


def test_db_url_gets_pymysql_and_utf8mb4() -> None:
    s = load_settings({"image_dir": "/x", "db_url": "mysql://u:p@h/db"})
    url = s.database_url()
    assert (url.drivername, url.query["charset"]) == ("mysql+pymysql", "utf8mb4")
    s = load_settings({"image_dir": "/x", "db_url": "mariadb+pymysql://u:p@h/db?charset=utf8"})
    assert s.database_url().query["charset"] == "utf8"


def test_wordpress_fields_come_together() -> None:
    with pytest.raises(ConfigError, match="needed together"):
        load_settings({"image_dir": "/x", "wp_api_url": "https://wp.example/"})
    assert not load_settings({"image_dir": "/x"}).wordpress_enabled


def test_blank_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGWATCH_IMAGE_DIR", "/x")
    for name in ["DB_URL", "DB_HOST", "DB_PASSWORD", "WP_API_URL", "WP_USER", "WP_PASSWORD"]:
        monkeypatch.setenv("IMGWATCH_" + name, "")
    s = load_settings({})
    assert s.db_url is None and s.wp_password is None and not s.wordpress_enabled


def test_db_url_and_fields_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="not both"):
        load_settings({"image_dir": "/x", "db_url": "sqlite://", "db_host": "h"})


def test_partial_fields_are_refused() -> None:
    with pytest.raises(ConfigError, match="needed together"):
        load_settings({"image_dir": "/x", "db_host": "h"})


@pytest.mark.parametrize("url", ["not a url secret-pw", "mysql://u:secret-pw@h:port/db"])
def test_bad_url_is_reported_without_the_url(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"image_dir": "/x", "db_url": url}).database_url()
    assert "secret-pw" not in str(info.value)


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(
        {
            "image_dir": "/x",
            "db_url": "mysql://u:topsecret@h/db",
            "wp_api_url": "https://wp.example/wp-json/wp/v2/media",
            "wp_user": "u",
            "wp_password": "wp-secret",
        }
    )
    assert "topsecret" not in repr(s) and "wp-secret" not in repr(s)
    assert "topsecret" not in str(s.model_dump())


def test_extensions_from_env_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGWATCH_IMAGE_DIR", "/x")
    monkeypatch.setenv("IMGWATCH_EXTENSIONS", "JPG, .png webp")
    assert load_settings({}).extensions == (".jpg", ".png", ".webp")


def test_invalid_value_names_the_variable_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGWATCH_IMAGE_DIR", "/x")
    monkeypatch.setenv("IMGWATCH_DB_PORT", "secret-looking-value")
    with pytest.raises(ConfigError, match="IMGWATCH_DB_PORT") as info:
        load_settings({})
    assert "secret-looking-value" not in str(info.value)


def test_env_file_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / "custom.env"
    env.write_text(
        "IMGWATCH_IMAGE_DIR=/from/file\nIMGWATCH_DEFAULT_DESCRIPTION=file\nOTHER_VAR=ignored\n"
    )
    assert load_settings({}, env).image_dir == Path("/from/file")
    monkeypatch.setenv("IMGWATCH_DEFAULT_DESCRIPTION", "env")
    assert load_settings({}, env).default_description == "env"
    assert load_settings({"default_description": "flag"}, env).default_description == "flag"


def test_default_env_file_in_cwd(tmp_path: Path) -> None:
    (tmp_path / "imgwatch.env").write_text("IMGWATCH_IMAGE_DIR=/from/cwd\n")
    assert load_settings({}).image_dir == Path("/from/cwd")


def test_unknown_setting_in_env_file_is_an_error(tmp_path: Path) -> None:
    env = tmp_path / "x.env"
    env.write_text("IMGWATCH_IMAGE_DIR=/x\nIMGWATCH_IMAGE_DRI=/typo\n")
    with pytest.raises(ConfigError, match="IMGWATCH_IMAGE_DRI is not a known setting"):
        load_settings({}, env)


def test_missing_env_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, tmp_path / "nope.env")


def test_an_unreadable_default_env_file_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under systemd, /etc/imgwatch/imgwatch.env is root-only and arrives through
    # EnvironmentFile=; the daemon's own user cannot open it and must not try.
    (tmp_path / "imgwatch.env").write_text("IMGWATCH_IMAGE_DIR=/from/file\n")
    real_access = os.access
    monkeypatch.setattr(
        "imgwatch.config.os.access",
        lambda p, mode: False if str(p).endswith("imgwatch.env") else real_access(p, mode),
    )
    with pytest.raises(ConfigError, match="IMGWATCH_IMAGE_DIR is required"):
        load_settings({})  # the file was not read: its IMAGE_DIR never arrived
    monkeypatch.setenv("IMGWATCH_IMAGE_DIR", "/from/environment")
    assert load_settings({}).image_dir == Path("/from/environment")
    with pytest.raises(ConfigError, match="not readable"):
        load_settings({}, tmp_path / "imgwatch.env")
