"""imgwatch.env.example documents every setting, and every line in it is valid."""

from __future__ import annotations

import re
from pathlib import Path

from imgwatch.config import ENV_PREFIX, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "imgwatch.env.example"


def test_every_setting_is_listed_with_a_comment() -> None:
    text = EXAMPLE.read_text()
    for name in Settings.model_fields:
        var = ENV_PREFIX + name.upper()
        match = re.search(rf"^# (.+)\n#?{var}=", text, re.MULTILINE)
        assert match, f"{var} missing or without a comment line above it"


def test_example_values_are_valid(tmp_path: Path) -> None:
    # Uncomment everything except the competing DB_URL, and load it.
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith("#IMGWATCH_") and not line.startswith("#IMGWATCH_DB_URL"):
            line = line[1:]
        lines.append(line)
    env = tmp_path / "full.env"
    env.write_text("\n".join(lines) + "\n")
    settings = load_settings({}, env)
    assert settings.wordpress_enabled
    assert settings.database_url().drivername == "mysql+pymysql"
