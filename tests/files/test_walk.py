"""The walk of the image directory (files/walk.py): what it yields, skips and never opens."""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from imgwatch.errors import ConfigError
from imgwatch.files.names import ImageNameFilter
from imgwatch.files.walk import FoundFile, WalkState, check_image_dir, find_one, walk
from tests.imagefiles import listings, write_image

JPG_PNG = ImageNameFilter([".jpg", ".png"])


def found_in(root: Path, accept: ImageNameFilter = JPG_PNG) -> dict[str, FoundFile]:
    return {f.file_name: f for f in walk(root, accept)}


def found_in_state(root: Path, state: WalkState) -> list[str]:
    return [f.file_name for f in walk(root, JPG_PNG, state)]


def test_links_are_followed_only_inside_the_tree(tmp_path: Path, image_dir: Path) -> None:
    outside = write_image(tmp_path / "outside.jpg")
    inside = write_image(image_dir / "real.jpg")
    (image_dir / "to-outside.jpg").symlink_to(outside)
    (image_dir / "to-inside.jpg").symlink_to(inside)
    (image_dir / "loop").symlink_to(image_dir)  # a directory link is never descended
    (image_dir / "loop.jpg").symlink_to(image_dir)  # a link to a directory is not a file
    (image_dir / "dangling.jpg").symlink_to(image_dir / "nothing-here.jpg")
    (image_dir / "self.jpg").symlink_to(image_dir / "self.jpg")  # a link loop
    found = {f.file_name: f.problem for f in walk(image_dir, ImageNameFilter([".jpg"]))}
    assert found == {
        "real.jpg": None,
        "to-inside.jpg": None,
        "to-outside.jpg": "symbolic link leads outside the image directory",
        "loop.jpg": "not a regular file: a link to a directory",
        "dangling.jpg": "broken symbolic link",
        "self.jpg": "symbolic link cannot be followed: Too many levels of symbolic links",
    }


def test_walk_of_a_subdirectory_names_files_from_the_root(image_dir: Path) -> None:
    write_image(image_dir / "top.jpg")
    write_image(image_dir / "a" / "b" / "deep.jpg")
    os.symlink(image_dir / "top.jpg", image_dir / "a" / "link.jpg")  # inside the tree: kept
    found = sorted(f.file_name for f in walk(image_dir, ImageNameFilter([".jpg"]), subdir="a"))
    assert found == ["a/b/deep.jpg", "a/link.jpg"]


def test_each_candidate_comes_with_its_path_size_and_mtime(image_dir: Path) -> None:
    top = write_image(image_dir / "a.jpg")
    deep = write_image(image_dir / "x" / "y" / "b.PNG")
    found = found_in(image_dir)
    assert set(found) == {"a.jpg", "x/y/b.PNG"}  # '/'-separated, from the root
    for name, path in (("a.jpg", top), ("x/y/b.PNG", deep)):
        st = path.stat()
        assert found[name] == FoundFile(name, str(path), st.st_size, st.st_mtime_ns)


def test_only_the_configured_extensions_are_candidates(image_dir: Path) -> None:
    for name in ("a.jpg", "b.png", "c.gif", "d.jpeg", "notes.txt", "jpg", "e.jpg.bak"):
        write_image(image_dir / name)
    assert set(found_in(image_dir)) == {"a.jpg", "b.png"}
    assert set(found_in(image_dir, ImageNameFilter([".GIF"]))) == {"c.gif"}


def test_hidden_and_partial_names_are_never_candidates(image_dir: Path) -> None:
    write_image(image_dir / "keep.jpg")
    for name in (".hidden.jpg", ".#lock.jpg", ".a.jpg.Xy12Ab", "x.jpg.part", "y.jpg~"):
        write_image(image_dir / name)
    # Nor anything under a hidden directory or one still being copied in.
    for folder in (".git", ".Trash-1000", "download.part", "copy.tmp", "old~"):
        write_image(image_dir / folder / "inside.jpg")
    assert set(found_in(image_dir)) == {"keep.jpg"}


def test_partial_suffixes_count_even_when_they_are_configured(image_dir: Path) -> None:
    # Someone lists ".tmp" as an image extension: still a name copy tools write first.
    write_image(image_dir / "scan.tmp")
    write_image(image_dir / "scan.jpg")
    assert set(found_in(image_dir, ImageNameFilter([".jpg", ".tmp"]))) == {"scan.jpg"}


def test_a_sidecar_s_mtime_comes_with_its_image(image_dir: Path) -> None:
    write_image(image_dir / "a.jpg")
    write_image(image_dir / "b.jpg")
    write_image(image_dir / "c.jpg")
    sidecar = image_dir / "a.jpg.json"
    sidecar.write_text('{"title": "A"}')
    (image_dir / "elsewhere.json").write_text("{}")
    (image_dir / "c.jpg.json").symlink_to(image_dir / "elsewhere.json")  # no sidecar
    found = found_in(image_dir)
    assert found["a.jpg"].sidecar_mtime_ns == sidecar.stat().st_mtime_ns
    assert found["b.jpg"].sidecar_mtime_ns is None
    assert found["c.jpg"].sidecar_mtime_ns is None
    assert "a.jpg.json" not in found


def test_a_fifo_with_an_image_name_is_named_not_opened(image_dir: Path) -> None:
    os.mkfifo(image_dir / "pipe.jpg")  # opening it to read would block the walk
    found = found_in(image_dir)
    assert found["pipe.jpg"].problem == "not a regular file: a FIFO"


def test_an_unreadable_directory_is_noted_and_the_rest_walked(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(image_dir / "top.jpg")
    write_image(image_dir / "locked" / "a.jpg")
    write_image(image_dir / "open" / "b.jpg")
    listings(monkeypatch, refused=[str(image_dir / "locked")])
    state = WalkState()
    assert set(found_in_state(image_dir, state)) == {"top.jpg", "open/b.jpg"}
    assert state.unreadable_dirs == ["locked/"]
    assert state.directories == 2  # the root and open/: what could be listed


def test_an_unreadable_root_yields_nothing_and_says_so(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(image_dir / "a.jpg")
    listings(monkeypatch, refused=[str(image_dir)])
    state = WalkState()
    assert found_in_state(image_dir, state) == []
    assert (state.unreadable_dirs, state.directories) == ([""], 0)


def test_the_directories_listed_are_counted(image_dir: Path) -> None:
    for name in ("a/1.jpg", "a/b/2.jpg", "c/3.jpg", ".hidden/4.jpg"):
        write_image(image_dir / name)
    (image_dir / "empty").mkdir()
    state = WalkState()
    assert len(found_in_state(image_dir, state)) == 3
    assert state.directories == 5  # root, a, a/b, c, empty: not the hidden one


def test_a_file_gone_between_the_listing_and_its_stat_is_passed_over(
    image_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.jpg", "b.jpg"):
        write_image(image_dir / name)
    real_scandir = os.scandir

    def scandir(handle: int) -> AbstractContextManager[list[os.DirEntry[str]]]:
        with real_scandir(handle) as listing:
            entries = list(listing)
        (image_dir / "b.jpg").unlink()  # deleted just after the listing
        return nullcontext(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    assert [f.file_name for f in walk(image_dir, JPG_PNG)] == ["a.jpg"]
    assert "cannot stat 'b.jpg': No such file or directory" in caplog.text


def test_a_file_gone_after_its_directory_was_walked_is_still_yielded_once(
    image_dir: Path,
) -> None:
    # Its directory was looked at in full first: the reader finds it gone.
    for name in ("a.jpg", "b.jpg"):
        write_image(image_dir / name)
    files = walk(image_dir, JPG_PNG)
    assert next(files).file_name == "a.jpg"
    (image_dir / "b.jpg").unlink()
    assert [f.file_name for f in files] == ["b.jpg"]


def test_no_directory_is_held_open_between_files(image_dir: Path) -> None:
    for i in range(3):
        write_image(image_dir / f"d{i}" / "a.jpg")
    open_before = len(os.listdir("/proc/self/fd"))
    files = walk(image_dir, JPG_PNG)
    next(files)
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_the_image_directory_is_checked_and_resolved(tmp_path: Path, image_dir: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(image_dir)
    assert check_image_dir(link) == image_dir.resolve()
    with pytest.raises(ConfigError, match=r"image directory '.*/nope' does not exist"):
        check_image_dir(tmp_path / "nope")
    write_image(tmp_path / "file.jpg")
    with pytest.raises(ConfigError, match="is not a directory"):
        check_image_dir(tmp_path / "file.jpg")
    with pytest.raises(ConfigError, match="Not a directory"):
        check_image_dir(tmp_path / "file.jpg" / "below")


def test_one_path_is_found_by_the_walk_s_rules(tmp_path: Path, image_dir: Path) -> None:
    image = write_image(image_dir / "sub" / "a.jpg")
    (image_dir / "sub" / "a.jpg.json").write_text("{}")
    st = image.stat()
    found = find_one(image_dir, "sub/a.jpg")
    assert found is not None
    assert found[:5] == ("sub/a.jpg", str(image), st.st_size, st.st_mtime_ns, None)
    assert found.sidecar_mtime_ns == (image_dir / "sub" / "a.jpg.json").stat().st_mtime_ns
    assert find_one(image_dir, "sub") is None  # a directory: the walk goes into it
    assert find_one(image_dir, "gone.jpg") is None
    (image_dir / "out.jpg").symlink_to(write_image(tmp_path / "outside.jpg"))
    out = find_one(image_dir, "out.jpg")
    assert out is not None and out.problem == "symbolic link leads outside the image directory"


def test_files_come_in_the_order_a_database_sorts_their_names(image_dir: Path) -> None:
    # Code point by code point, a directory where its name and a slash sort: so
    # 'a/b.jpg' comes between 'a.jpg' and 'a0.jpg', as in the file_name index.
    names = ["a0.jpg", "a.jpg", "a/b.jpg", "a/a/z.jpg", "B.jpg", "a-b.jpg", "\u00e9.jpg", "z.jpg"]
    for name in names:
        write_image(image_dir / name, 4, 4)
    walked = [f.file_name for f in walk(image_dir, JPG_PNG)]
    assert walked == sorted(names)
    assert walked == [
        "B.jpg",
        "a-b.jpg",
        "a.jpg",
        "a/a/z.jpg",
        "a/b.jpg",
        "a0.jpg",
        "z.jpg",
        "\u00e9.jpg",
    ]


def test_a_range_of_names_is_that_slice_of_the_walk(image_dir: Path) -> None:
    names = [
        "a.jpg",
        "a/b.jpg",
        "a/c.jpg",
        "a/c/d.jpg",
        "a.b/x.jpg",
        "a0.jpg",
        "ab.jpg",
        "b.jpg",
        "b/x.jpg",
        "c/d.jpg",
        "c/d/e/f.jpg",
        "z.jpg",
        "z/\x01.jpg",
    ]
    for name in names:
        write_image(image_dir / name, 2, 2)
    whole = [f.file_name for f in walk(image_dir, JPG_PNG)]
    assert whole == sorted(names)
    bounds = sorted(set(whole) | {"", "a/", "a/c/", "a/c0", "a0", "b/", "c/d/", "c/d/e/", "zz"})
    for lo in [None, *bounds]:
        for hi in [None, *bounds]:
            got = [f.file_name for f in walk(image_dir, JPG_PNG, names=(lo, hi))]
            assert got == [
                n for n in whole if (lo is None or n >= lo) and (hi is None or n < hi)
            ], (lo, hi)


def test_a_directory_gone_before_it_is_walked_is_no_warning(
    image_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_image(image_dir / "in" / "a.jpg")
    files = walk(image_dir, JPG_PNG, state := WalkState(), subdir="in")
    shutil.rmtree(image_dir / "in")  # moved away before the daemon walked it
    with caplog.at_level(logging.INFO):
        assert list(files) == []
    assert "directory 'in/' went away before it was walked" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert state.unreadable_dirs == ["in/"]  # its rows are not taken for gone by this walk


def test_the_image_directory_gone_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert list(walk(tmp_path / "share", JPG_PNG, state := WalkState())) == []
    assert "cannot list directory '.': No such file or directory" in caplog.text
    assert state.unreadable_dirs == [""]


def test_a_range_that_ends_between_an_image_and_its_sidecar_sees_the_sidecar(
    image_dir: Path,
) -> None:
    write_image(image_dir / "a.jpg")
    (image_dir / "a.jpg.json").write_text("{}")
    for names in [(None, "a.jpg.json"), ("a.jpg", "a.jpg.json"), (None, None)]:
        (found,) = walk(image_dir, JPG_PNG, names=names)
        assert found.sidecar_mtime_ns == (image_dir / "a.jpg.json").stat().st_mtime_ns, names


def test_a_directory_outside_the_range_is_not_listed(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(image_dir / "a" / "1.jpg")
    write_image(image_dir / "m" / "1.jpg")
    write_image(image_dir / "z" / "1.jpg")
    listed = listings(monkeypatch)
    state = WalkState()
    found = [f.file_name for f in walk(image_dir, JPG_PNG, state, names=("b", "n"))]
    assert found == ["m/1.jpg"]
    assert [os.path.relpath(d, image_dir) for d in listed] == [".", "m"]  # never a/ nor z/
    assert state.directories == 1  # m, not the root: that is the first part's


def test_a_directory_above_the_range_that_cannot_be_listed_is_told_by_its_own_part(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_image(image_dir / "a" / "m" / "1.jpg")
    listings(monkeypatch, refused=[str(image_dir / "a")])
    below, own = WalkState(), WalkState()
    assert list(walk(image_dir, JPG_PNG, below, names=("a/m/", None))) == []
    # Noted, so no row under it is taken for gone, but said by the part it is in.
    assert below.unreadable_dirs == ["a/"] and "cannot list directory" not in caplog.text
    assert list(walk(image_dir, JPG_PNG, own, names=(None, "a/m/"))) == []
    assert own.unreadable_dirs == ["a/"]
    assert caplog.text.count("cannot list directory 'a/'") == 1
