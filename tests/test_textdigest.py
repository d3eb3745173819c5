"""The words' fingerprint (textdigest.py): one part per field, stable, and what changed."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys

import pytest

from imgwatch.textdigest import (
    PART,
    TEXT_FIELDS,
    UNKNOWN,
    as_text,
    changed_fields,
    field_digest,
    text_digest,
)


def test_fields_that_changed_are_told_apart() -> None:
    sent = text_digest("T", "D", None, "A")
    assert changed_fields(sent, ("T", "D", "", "A")) == []  # empty is the same as none
    assert changed_fields(sent, ("T2", "D", None, "A")) == ["title"]
    assert changed_fields(sent, ("T", "D", "C", None)) == ["caption", "alt_text"]
    assert changed_fields(UNKNOWN, ("T", "D", None, "A")) == [
        "title",
        "description",
        "caption",
        "alt_text",
    ]
    assert len(sent) == 64 and field_digest(None) == field_digest("")


WORDS = ("Sunset", "Over the bay", "Taken in May", "An orange sky above the water")


def test_the_same_words_give_the_same_digest_in_any_process() -> None:
    copies = ["".join(list(w)) for w in WORDS]  # equal strings, other objects
    assert text_digest(*copies) == text_digest(*WORDS)
    # Stored in the database, it must hold in the next process too (another hash seed).
    script = f"from imgwatch.textdigest import text_digest; print(text_digest(*{WORDS!r}))"
    other = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert other.stdout.strip() == text_digest(*WORDS)


@pytest.mark.parametrize("index", range(4))
def test_a_change_in_any_one_field_changes_that_part_only(index: int) -> None:
    before = text_digest(*WORDS)
    words = list(WORDS)
    words[index] += "!"
    after = text_digest(*words)
    assert after != before
    parts = [slice(i * PART, (i + 1) * PART) for i in range(4)]
    assert [before[p] != after[p] for p in parts] == [i == index for i in range(4)]
    assert changed_fields(before, words) == [TEXT_FIELDS[index]]


def test_the_same_words_in_another_field_are_another_digest() -> None:
    digests = {text_digest(*order) for order in itertools.permutations(WORDS)}
    assert len(digests) == 24


def test_each_part_is_the_start_of_the_sha256_the_database_computes() -> None:
    # MySQL's SHA2(x, 256) and the function registered on SQLite give the same hex.
    for value in ("Sunset", "caf\u00e9 \U0001f600", ""):
        assert field_digest(value) == hashlib.sha256(value.encode("utf-8")).hexdigest()[:PART]
    assert text_digest(*WORDS) == "".join(field_digest(w) for w in WORDS)
    assert len(text_digest(*WORDS)) == 4 * PART
    assert all(c in "0123456789abcdef" for c in text_digest(*WORDS))


def test_whatever_a_person_stored_counts_as_its_text() -> None:
    # SQLite keeps a blob or a number as given.
    assert as_text(None) == ""
    assert as_text(b"caf\xc3\xa9") == "caf\u00e9"
    assert as_text(b"\xff") == "\ufffd"
    assert as_text(42) == "42"
    assert field_digest(b"caf\xc3\xa9") == field_digest("caf\u00e9")
    assert field_digest(42) == field_digest("42")


def test_unicode_forms_and_blanks_are_not_folded() -> None:
    # What WordPress was sent is what counts: another form is other text.
    assert field_digest("cafe\u0301") != field_digest("caf\u00e9")
    assert field_digest("Sunset ") != field_digest("Sunset")


def test_digests_stay_right_past_the_values_kept() -> None:
    # The parts already computed are kept up to a bound; beyond it they are computed again.
    for i in range(6000):
        value = f"title {i}"
        assert field_digest(value) == hashlib.sha256(value.encode()).hexdigest()[:PART]
    assert field_digest("title 3") == hashlib.sha256(b"title 3").hexdigest()[:PART]


def test_an_unknown_digest_sends_every_field_and_is_no_digest() -> None:
    assert text_digest(None, None, None, None) != UNKNOWN
    assert changed_fields(UNKNOWN, (None, None, None, None)) == list(TEXT_FIELDS)


def test_changed_fields_needs_all_four_values() -> None:
    with pytest.raises(ValueError, match="zip"):
        changed_fields(text_digest(*WORDS), WORDS[:3])
