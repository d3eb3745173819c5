"""Outcomes of uploads (wordpress/outcomes.py): the retry schedules and the tally."""

from __future__ import annotations

import datetime as dt

import pytest

from imgwatch.model import utcnow
from imgwatch.wordpress.outcomes import (
    RESCHEDULE_MAX,
    Outcome,
    RetryPolicy,
    UploadTally,
    reschedule_at,
)


def test_retry_policy_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(attempts=5, base=1.0, cap=5.0)
    for attempt, top in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delay = policy.delay(attempt)
        assert top / 2 <= delay <= top
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=100.0) == 5.0


def test_reschedule_grows_to_an_hour() -> None:
    now = utcnow()
    first = reschedule_at(0) - now
    assert dt.timedelta(seconds=50) < first < dt.timedelta(seconds=70)
    assert reschedule_at(3) - now > dt.timedelta(minutes=7)
    assert reschedule_at(50) - now <= dt.timedelta(hours=1, seconds=1)
    assert reschedule_at(0, retry_after=600) - now >= dt.timedelta(seconds=599)


def delay_of(
    attempts_so_far: int, retry_after: float | None = None
) -> tuple[dt.timedelta, dt.timedelta]:
    """The least and the most reschedule_at may have added to the time it was called."""
    before = utcnow()
    when = reschedule_at(attempts_so_far, retry_after)
    after = utcnow()
    # utcnow() is whole seconds: `when` was now + delay at some instant in between.
    return when - after, when - before


@pytest.mark.parametrize(
    ("attempts", "minutes"), [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (10, 60)]
)
def test_a_failed_row_waits_twice_as_long_each_time_up_to_an_hour(
    attempts: int, minutes: int
) -> None:
    least, most = delay_of(attempts)
    assert least <= dt.timedelta(minutes=minutes) <= most


def test_the_schedule_stays_at_an_hour_however_often_a_row_failed() -> None:
    # A row may fail for weeks: 2 ** attempts must not overflow a timedelta.
    for attempts in (11, 64, 10**6):
        least, most = delay_of(attempts)
        assert least <= RESCHEDULE_MAX <= most


def test_a_retry_after_longer_than_the_backoff_is_waited_up_to_the_hour() -> None:
    least, most = delay_of(0, retry_after=300)
    assert least <= dt.timedelta(seconds=300) <= most
    shorter = delay_of(3, retry_after=5)  # the backoff (8 min) is longer: it counts
    assert shorter[0] <= dt.timedelta(minutes=8) <= shorter[1]
    capped = delay_of(0, retry_after=86400)
    assert capped[0] <= RESCHEDULE_MAX <= capped[1]


def test_the_defaults_are_three_attempts_a_second_apart_at_first() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.base, policy.cap) == (3, 1.0, 30.0)
    assert 0.5 <= policy.delay(1) <= 1.0


def test_the_jitter_spreads_retries_over_the_upper_half_of_the_backoff() -> None:
    policy = RetryPolicy(base=2.0, cap=100.0)
    delays = [policy.delay(3) for _ in range(200)]  # a backoff of 8 s
    assert all(4.0 <= d <= 8.0 for d in delays)
    # Spread, not in step: two workers failing together do not retry together.
    assert max(delays) - min(delays) > 1.0


def test_a_retry_after_is_taken_as_it_is_below_the_cap() -> None:
    policy = RetryPolicy(attempts=3, base=1.0, cap=30.0)
    assert policy.delay(3, retry_after=0.0) == 0.0
    assert policy.delay(1, retry_after=12.5) == 12.5
    assert policy.delay(1, retry_after=31.0) == 30.0


def test_a_tally_counts_each_outcome() -> None:
    tally = UploadTally()
    tally.add("done")
    tally.add(Outcome.DONE)
    tally.add("waiting", 5)
    assert (tally[Outcome.DONE], tally[Outcome.WAITING], tally[Outcome.FAILED]) == (2, 5, 0)
    assert tally.counts == {Outcome.DONE: 2, Outcome.WAITING: 5}


def test_tallies_of_several_workers_add_up() -> None:
    first, second = UploadTally(), UploadTally()
    first.add("done", 2)
    first.add("failed")
    second.add("done")
    second.add("reused", 3)
    first.merge(second)
    assert first.counts == {Outcome.DONE: 3, Outcome.FAILED: 1, Outcome.REUSED: 3}
    assert second.counts == {Outcome.DONE: 1, Outcome.REUSED: 3}  # merged from, not changed


def test_an_outcome_no_one_knows_is_refused() -> None:
    # The outcomes are also metric labels: a typo must not make a new one.
    with pytest.raises(ValueError, match="'uploaded'"):
        UploadTally().add("uploaded")


def test_the_outcomes_are_the_words_the_uploader_returns() -> None:
    words = {"done", "reused", "updated", "gone", "failed", "skipped", "waiting", "purged", "kept"}
    assert {str(o) for o in Outcome} == words
    assert all(Outcome(word) == word for word in words)
