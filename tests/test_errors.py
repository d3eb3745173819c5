"""The errors (errors.py): which end a run with which exit code, and what each carries."""

from __future__ import annotations

import pytest

from imgwatch.config import load_settings
from imgwatch.errors import (
    ConfigError,
    DatabaseUnavailable,
    ImgwatchError,
    PermanentError,
    SiteCondition,
    TransientError,
    UploadError,
    UsageError,
)
from imgwatch.wordpress.addresses import ApiRoot


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ImgwatchError, 1),
        (UsageError, 64),  # EX_USAGE: systemd does not restart on it
        (ConfigError, 78),  # EX_CONFIG: a restart will not help
        (DatabaseUnavailable, 75),  # EX_TEMPFAIL: try again later
    ],
)
def test_each_error_that_ends_a_run_has_its_sysexits_code(
    error: type[ImgwatchError], code: int
) -> None:
    assert error.exit_code == code
    assert error("why").exit_code == code
    assert issubclass(error, ImgwatchError)


def test_an_upload_error_never_ends_a_run() -> None:
    # The command line catches ImgwatchError; one file's trouble must not be one.
    for error in (UploadError, TransientError, PermanentError, SiteCondition):
        assert issubclass(error, UploadError)
        assert not issubclass(error, ImgwatchError)


def test_an_upload_error_s_message_is_the_reason_recorded() -> None:
    assert str(PermanentError("WordPress upload: 400 rest_upload_no_data: No data.")) == (
        "WordPress upload: 400 rest_upload_no_data: No data."
    )


def test_a_transient_error_may_say_when_to_try_again() -> None:
    plain = TransientError("WordPress upload: 502 HTML page")
    assert (str(plain), plain.retry_after) == ("WordPress upload: 502 HTML page", None)
    assert TransientError("503", retry_after=7.5).retry_after == 7.5


def test_a_site_condition_names_its_kind_and_whether_the_settings_are_wrong() -> None:
    passing = SiteCondition("rate_limited", "WordPress asks for fewer requests", 30.0)
    assert (passing.kind, str(passing), passing.retry_after, passing.settings) == (
        "rate_limited",
        "WordPress asks for fewer requests",
        30.0,
        False,
    )
    wrong = SiteCondition("unauthorized", "WordPress refuses the password", settings=True)
    assert (wrong.retry_after, wrong.settings) == (None, True)


def test_the_settings_errors_that_meet_a_password_do_not_repeat_it() -> None:
    with pytest.raises(ConfigError) as in_url:
        ApiRoot.from_setting("https://uploader:hunter2-secret@wp.example/wp-json/")
    with pytest.raises(ConfigError) as bad_db_url:
        settings = load_settings({"image_dir": "/x", "db_url": "u:hunter2-secret@db.example"})
        settings.database_url()
    messages = [str(in_url.value), str(bad_db_url.value)]
    assert all("hunter2-secret" not in m and "\n" not in m for m in messages), messages
