"""Which names are candidate images."""

from __future__ import annotations

import pytest

from imgwatch.files.names import ImageNameFilter, is_hidden_or_temp

DEFAULT = ImageNameFilter((".jpg", ".jpeg", ".png", ".gif"))


@pytest.mark.parametrize("name", ["a.jpg", "A.JPG", "b.Jpeg", "c.png", "d.GIF", "x y.jpg"])
def test_accepts_configured_extensions_in_any_case(name: str) -> None:
    assert DEFAULT(name)


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.jpg",
        ".#lock.jpg",
        ".a.jpg.Xy12Ab",
        "a.jpg.part",
        "a.jpg.tmp",
        "a.jpg.crdownload",
        "a.jpg~",
        "a.webp",
        "a.txt",
        "jpg",
    ],
)
def test_refuses_hidden_temp_and_other_names(name: str) -> None:
    assert not DEFAULT(name)


def test_temp_names_are_recognised_for_directories_too() -> None:
    assert is_hidden_or_temp(".git")
    assert not is_hidden_or_temp("photos")


def test_repr_shows_extensions() -> None:
    assert "'.png'" in repr(ImageNameFilter([".PNG"]))
