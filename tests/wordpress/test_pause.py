"""The upload pause (wordpress/pause.py): probes with capped backoff, on an injected clock."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from imgwatch.errors import SiteCondition
from imgwatch.wordpress.pause import UploadPause, duration


def test_pause_probes_with_capped_backoff_and_says_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    now = [100.0]
    pause = UploadPause(probe_max=10, clock=lambda: now[0])
    firewall = SiteCondition("firewall", "WordPress answers 403 with an HTML page")
    pause.report(firewall)
    pause.report(firewall)  # a second upload meets it too: said once
    assert caplog.text.count("uploads paused") == 1
    waits = []
    for _ in range(6):
        wait = pause.seconds_to_probe()
        assert wait is not None
        waits.append(wait)
        assert not pause.probe_due()
        now[0] += wait
        assert pause.probe_due()
        pause.probe_failed(firewall)
    assert waits == [2, 4, 8, 10, 10, 10]
    state = pause.state()
    assert state is not None and state.kind == "firewall" and state.seconds == now[0] - 100
    pause.resume()
    assert pause.condition is None and "uploads resume" in caplog.text
    # A condition the probe did not see: the backoff goes on where it was.
    pause.report(firewall)
    assert pause.seconds_to_probe() == 10
    assert "answered the probe, not the upload" in caplog.text
    pause.resume()
    pause.worked()
    pause.report(firewall)
    assert pause.seconds_to_probe() == 2


def test_retry_after_delays_the_probe() -> None:
    now = [0.0]
    pause = UploadPause(probe_max=300, clock=lambda: now[0])
    pause.report(SiteCondition("rate_limited", "429", retry_after=60))
    assert pause.seconds_to_probe() == 60


class Clock:
    """The pause's monotonic clock and its wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = dt.datetime(2026, 3, 1, 12, 0, 0)

    def __call__(self) -> float:
        return self.now

    def at_wall(self) -> dt.datetime:
        return self.wall + dt.timedelta(seconds=self.now - 1000.0)

    def pause(self, probe_max: float = 300.0) -> UploadPause:
        return UploadPause(probe_max=probe_max, clock=self, wall=self.at_wall)


FIREWALL = SiteCondition("firewall", "WordPress answers 403 with an HTML page")
DOWN = SiteCondition("unreachable", "cannot connect to WordPress at wp.example")


def test_without_a_condition_nothing_waits() -> None:
    pause = Clock().pause()
    assert pause.condition is None and pause.state() is None
    assert pause.seconds_to_probe() is None and not pause.probe_due()
    assert not pause.unproven


def test_the_state_says_what_since_when_and_how_long() -> None:
    clock = Clock()
    pause = clock.pause()
    clock.now += 5
    pause.report(FIREWALL)
    clock.now += 70
    pause.report(DOWN)  # another upload meets something else: the pause goes on
    state = pause.state()
    assert state is not None
    assert (state.kind, state.message) == ("unreachable", str(DOWN))
    assert state.since == dt.datetime(2026, 3, 1, 12, 0, 5)  # when it began, not the latest
    assert state.seconds == 70


def test_a_changed_condition_is_said_and_keeps_the_probe_when_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    pause = clock.pause()
    pause.report(FIREWALL)
    clock.now += 1
    pause.report(DOWN)
    assert pause.condition is DOWN
    assert pause.seconds_to_probe() == 1  # 2 s after the start, as scheduled
    assert f"uploads still paused, now: {DOWN}" in caplog.text
    pause.report(SiteCondition("unreachable", str(DOWN)))  # the same words: not said again
    assert caplog.text.count("uploads still paused, now:") == 1


def test_an_operator_can_have_the_site_probed_at_once() -> None:
    clock = Clock()
    pause = clock.pause()
    pause.report(FIREWALL)
    assert not pause.probe_due()
    pause.probe_now()
    assert pause.probe_due() and pause.seconds_to_probe() == 0


def test_a_retry_after_beyond_the_longest_pause_is_cut_to_it() -> None:
    clock = Clock()
    pause = clock.pause(probe_max=120)
    pause.report(SiteCondition("rate_limited", "429", retry_after=3600))
    assert pause.seconds_to_probe() == 120
    short = clock.pause()
    short.report(SiteCondition("rate_limited", "429", retry_after=0.5))
    assert short.seconds_to_probe() == 2  # never sooner than the backoff


def test_a_longest_pause_below_the_first_probe_is_kept() -> None:
    clock = Clock()
    pause = clock.pause(probe_max=0.5)
    pause.report(FIREWALL)
    assert pause.seconds_to_probe() == 0.5
    clock.now += 0.5
    pause.probe_failed(FIREWALL)
    assert pause.seconds_to_probe() == 0.5


def test_a_long_pause_is_recalled_each_hour(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    pause = clock.pause(probe_max=600)
    pause.report(FIREWALL)
    for _ in range(20):  # 2 + 4 + ... + 512 s, then 600 s each: 2.1 h in all
        wait = pause.seconds_to_probe()
        assert wait is not None
        clock.now += wait
        pause.probe_failed(FIREWALL)
    assert clock.now - 1000 == 1022 + 11 * 600
    reminders = [r.getMessage() for r in caplog.records if "still paused after" in r.getMessage()]
    # The first failed probe an hour or more after the pause began, then an hour on.
    assert reminders == [
        f"uploads still paused after 67 min: {FIREWALL}",
        f"uploads still paused after 2.1 h: {FIREWALL}",
    ]


def test_resuming_when_not_paused_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pause = Clock().pause()
    pause.resume()
    assert not pause.unproven and "resume" not in caplog.text


def test_after_a_probe_passed_uploads_must_prove_the_site_healthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    pause = clock.pause()
    pause.report(FIREWALL)
    clock.now += 150
    pause.resume()
    assert pause.unproven and pause.condition is None
    assert "WordPress answers properly again after 2 min; uploads resume" in caplog.text
    pause.worked()
    assert not pause.unproven


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "0s"), (89, "89s"), (90, "2 min"), (3000, "50 min"), (5400, "1.5 h"), (86400, "24.0 h")],
)
def test_durations_are_said_in_the_unit_that_fits(seconds: float, words: str) -> None:
    assert duration(seconds) == words
