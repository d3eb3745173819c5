"""Errors that end a run, each carrying the process exit code it maps to.

    ImgwatchError            (exit 1)
     ├── ConfigError         (exit 78, EX_CONFIG: a restart will not help)
     └── DatabaseUnavailable (exit 75, EX_TEMPFAIL: try again later)

Messages are one line, meant for an operator, and never contain a password.
"""

import os


class ImgwatchError(Exception):
    """Base class: a run cannot go on."""

    exit_code = 1


class ConfigError(ImgwatchError):
    """Settings are invalid, or the image directory or database cannot be used as configured."""

    exit_code = os.EX_CONFIG


class DatabaseUnavailable(ImgwatchError):
    """The database did not answer; running again later may succeed."""

    exit_code = os.EX_TEMPFAIL
