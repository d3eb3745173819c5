"""packaging/systemd: the unit verifies, is hardened, and its companions work.

systemd need not be running: `systemd-analyze` checks unit files offline, and
`systemd-sysusers --root` creates the user in a scratch tree.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

PACKAGING = Path(__file__).resolve().parent.parent / "packaging" / "systemd"
UNIT = PACKAGING / "imgwatch.service"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"CI=true and {name} is missing (Debian package systemd)", pytrace=False)
        pytest.skip(f"{name} is not installed (Debian package systemd)")
    return path


def service_section() -> dict[str, list[str]]:
    """Every Key=value of [Service]; repeated keys keep every value."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart and EnvironmentFile pointing at files that exist here."""
    env = tmp_path / "imgwatch.env"
    env.write_text("IMGWATCH_IMAGE_DIR=/srv/images\n")
    text = UNIT.read_text()
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={sys.executable} -m imgwatch", text)
    text = re.sub(r"(?m)^EnvironmentFile=.*$", f"EnvironmentFile={env}", text)
    copy = tmp_path / "imgwatch.service"
    copy.write_text(text)
    return copy


def test_unit_says_what_an_operator_expects() -> None:
    s = service_section()
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    # Exit codes of a bad configuration (78) and a wrong flag (64): restarting will not help.
    assert s["RestartPreventExitStatus"] == ["64 78"]
    assert s["EnvironmentFile"] == ["/etc/imgwatch/imgwatch.env"]
    assert s["StateDirectory"] == ["imgwatch"]
    assert s["User"] == ["imgwatch"]
    assert int(s["WatchdogSec"][0]) > 0
    # Stop timeout leaves room for imgwatch's own in-flight deadline (default 20 s).
    assert int(s["TimeoutStopSec"][0]) > 20
    assert "ProcSubset" not in s  # it would hide /proc/sys/fs/inotify


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            tool("systemd-analyze"),
            "verify",
            "--man=no",
            "--recursive-errors=yes",
            str(runnable_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_exposure_is_at_most_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=true",
            "--threshold=20",
            str(runnable_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for imgwatch.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0
    assert result.returncode == 0  # --threshold=20 (2.0) makes it fail above


def test_sysusers_creates_the_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [tool("systemd-sysusers"), f"--root={tmp_path}", str(PACKAGING / "imgwatch.sysusers")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert re.search(r"^imgwatch:x:\d+:\d+:[^:]*:/var/lib/imgwatch:", passwd, re.M), passwd


def test_sysctl_snippet_names_real_inotify_settings() -> None:
    parser = configparser.ConfigParser()
    parser.read_string("[sysctl]\n" + (PACKAGING / "60-imgwatch.conf").read_text())
    keys = set(parser["sysctl"])
    assert "fs.inotify.max_user_watches" in keys
    assert "fs.inotify.max_queued_events" in keys
    for key in keys:
        assert os.path.exists("/proc/sys/" + key.replace(".", "/")), key
        assert int(parser["sysctl"][key]) > 0
    # Above the 8192 many kernels default to: the point of the snippet.
    assert int(parser["sysctl"]["fs.inotify.max_user_watches"]) > 8192


def test_watch_limit_message_points_at_the_shipped_snippet() -> None:
    from imgwatch.daemon.watch import _limit_error

    error = _limit_error(OSError(28, "No space left on device"))
    assert error is not None and "60-imgwatch.conf" in str(error)
    assert (PACKAGING / "60-imgwatch.conf").exists()
