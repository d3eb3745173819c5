"""Running imgwatch as a person does: a real process with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL


def run(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    wrapper: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IMGWATCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "imgwatch", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def mysql_env(url: URL) -> dict[str, str]:
    """The original service's discrete settings, as an operator would write them."""
    return {
        "IMGWATCH_DB_HOST": str(url.host),
        "IMGWATCH_DB_PORT": str(url.port),
        "IMGWATCH_DB_USER": str(url.username),
        "IMGWATCH_DB_PASSWORD": str(url.password),
        "IMGWATCH_DB_NAME": str(url.database),
    }
