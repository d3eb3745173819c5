"""Errors that end a run, each carrying the process exit code it maps to.

    ImgwatchError            (exit 1)
     ├── UsageError          (exit 64, EX_USAGE: the command line is wrong)
     ├── ConfigError         (exit 78, EX_CONFIG: a restart will not help)
     └── DatabaseUnavailable (exit 75, EX_TEMPFAIL: try again later)

    UploadError              (one request to WordPress did not do what it should)
     ├── TransientError      (unsure: a 5xx, a timeout; retried with backoff, then a
     │                        probe of the site tells the site's fault from the file's)
     ├── PermanentError      (WordPress refused this file: failed until the file changes)
     └── SiteCondition       (nothing about the file: all uploads pause, the site is probed)

Messages are one line, meant for an operator, and never contain a password.
"""

import os


class ImgwatchError(Exception):
    """Base class: a run cannot go on."""

    exit_code = 1


class UsageError(ImgwatchError):
    """An argument that parsed but cannot be used (a file outside the image directory)."""

    exit_code = os.EX_USAGE


class ConfigError(ImgwatchError):
    """Settings are invalid, or the image directory or database cannot be used as configured."""

    exit_code = os.EX_CONFIG


class DatabaseUnavailable(ImgwatchError):
    """The database did not answer; running again later may succeed."""

    exit_code = os.EX_TEMPFAIL


class UploadError(Exception):
    """One file could not be uploaded; the message is the reason recorded in `last_error`."""


class TransientError(UploadError):
    """Worth trying again after a pause: connection trouble, timeouts, 408, 429, most 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(UploadError):
    """Trying again will not help until something changes: WordPress refused the file."""


class SiteCondition(UploadError):
    """WordPress, or what stands in front of it, answers no upload properly now: a
    refused password, a firewall's or a cache's HTML page, a redirect, no answer.
    Nothing is said about the file: every upload waits until a probe succeeds.

    `kind` is a short fixed name (a metric label); the message says what to look at.
    `settings`: seen at start, it means the settings are wrong (a refused password,
    an address that redirects): the daemon stops there rather than wait silently.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        retry_after: float | None = None,
        *,
        settings: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.settings = settings
