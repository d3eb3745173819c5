"""Title, description, caption and alt text from XMP, IPTC, EXIF and sidecar files:
images made here with known fields, read by the real reader, recorded in the real
databases and sent to the real WordPress."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.engine import URL

from imgwatch.db.store import ImageStore
from imgwatch.files.inspect import inspect_image
from imgwatch.files.metadata import TextFields
from imgwatch.files.record import FileProcessor
from imgwatch.model import ImageRecord, Status
from tests.daemonproc import daemon_env, start, wait_rows
from tests.faultproxy import FaultProxy
from tests.imagefiles import (
    iptc_app13,
    write_image,
    write_png_with_xmp,
    write_tagged_jpeg,
    xmp_packet,
)
from tests.rows import row_of
from tests.runner import run
from tests.servers import MariaDB, WordPress
from tests.wordpress.test_uploader import wp_env

XP_TITLE, IMAGE_DESCRIPTION, ORIENTATION, XP_COMMENT = 0x9C9B, 0x010E, 0x0112, 0x9C9C


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\x00\x00"


def every_source(path: Path) -> Path:
    return write_tagged_jpeg(
        path,
        xmp=xmp_packet("XMP title", "XMP description", "XMP alt"),
        iptc=iptc_app13("IPTC title", "IPTC caption"),
        exif={IMAGE_DESCRIPTION: "EXIF description", XP_TITLE: utf16("EXIF title")},
    )


# --- precedence, source by source ------------------------------------------------------


def test_xmp_comes_first(tmp_path: Path) -> None:
    facts = inspect_image(str(every_source(tmp_path / "a.jpg")))
    assert facts.text == TextFields("XMP title", "XMP description", "XMP description", "XMP alt")


def test_iptc_when_there_is_no_xmp(tmp_path: Path) -> None:
    path = write_tagged_jpeg(
        tmp_path / "a.jpg",
        iptc=iptc_app13("Sch\u00f6ne Aussicht \U0001f3d4", "Am Morgen"),
        exif={IMAGE_DESCRIPTION: "EXIF description", XP_TITLE: utf16("EXIF title")},
    )
    text = inspect_image(str(path)).text
    assert text == TextFields("Sch\u00f6ne Aussicht \U0001f3d4", "Am Morgen", "Am Morgen", None)


def test_exif_when_there_is_nothing_else(tmp_path: Path) -> None:
    path = write_tagged_jpeg(
        tmp_path / "a.jpg",
        exif={IMAGE_DESCRIPTION: "Harbour at dusk", XP_TITLE: utf16("Harbour")},
    )
    assert inspect_image(str(path)).text == TextFields(
        "Harbour", "Harbour at dusk", "Harbour at dusk", None
    )


def test_a_cameras_filler_description_is_no_description(tmp_path: Path) -> None:
    path = write_tagged_jpeg(
        tmp_path / "a.jpg",
        exif={IMAGE_DESCRIPTION: "OLYMPUS DIGITAL CAMERA         ", XP_COMMENT: utf16("Mine")},
    )
    assert inspect_image(str(path)).text.description == "Mine"
    plain = write_tagged_jpeg(tmp_path / "b.jpg", exif={IMAGE_DESCRIPTION: "SONY DSC"})
    assert inspect_image(str(plain)).text == TextFields()


def test_xmp_in_a_png(tmp_path: Path) -> None:
    path = write_png_with_xmp(tmp_path / "a.png", xmp_packet("PNG title", None, "PNG alt"))
    assert inspect_image(str(path)).text == TextFields("PNG title", None, None, "PNG alt")


@pytest.mark.parametrize(
    ("orientation", "shown"), [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))]
)
def test_exif_orientation_turns_the_dimensions(
    tmp_path: Path, orientation: int, shown: tuple[int, int]
) -> None:
    path = write_tagged_jpeg(
        tmp_path / "a.jpg", width=40, height=20, exif={ORIENTATION: orientation}
    )
    facts = inspect_image(str(path))
    assert (facts.width, facts.height) == shown


@pytest.mark.parametrize(
    "packet",
    [
        b"<x:xmpmeta><rdf:RDF>not closed",
        # Entity expansion (billion laughs): refused, not expanded.
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b"&b;</x:xmpmeta>",
    ],
)
def test_broken_or_hostile_xmp_is_ignored_and_the_image_kept(tmp_path: Path, packet: bytes) -> None:
    path = write_tagged_jpeg(tmp_path / "a.jpg", xmp=packet, iptc=iptc_app13("IPTC title"))
    facts = inspect_image(str(path))
    assert facts.mime_type == "image/jpeg"
    assert facts.text.title == "IPTC title"


def test_long_texts_are_cut_to_their_columns(tmp_path: Path) -> None:
    path = write_tagged_jpeg(tmp_path / "a.jpg", xmp=xmp_packet("t" * 400, "d" * 20_000))
    text = inspect_image(str(path)).text
    assert len(text.title or "") == 255 and len(text.description or "") == 10_000


# --- sidecar files ---------------------------------------------------------------------


def record_of(path: Path) -> ImageRecord:
    st = path.stat()
    processor = FileProcessor("Image description")
    record = processor.process(path.name, str(path), st.st_size, st.st_mtime_ns)
    assert record is not None
    return record


def test_a_sidecar_overrides_the_image_field_by_field(tmp_path: Path) -> None:
    image = every_source(tmp_path / "a.jpg")
    (tmp_path / "a.jpg.json").write_text(
        json.dumps({"title": " Sidecar title ", "alt_text": "Sidecar alt", "other": 1})
    )
    record = record_of(image)
    assert (record.title, record.description, record.caption, record.alt_text) == (
        "Sidecar title",
        "XMP description",
        "XMP description",
        "Sidecar alt",
    )
    assert record.sidecar_fields == ("title", "alt_text")
    assert record.sidecar_mtime_ns == (tmp_path / "a.jpg.json").stat().st_mtime_ns


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "invalid JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"title": 5}', "title is not a string"),
        (b"\xff\xfe", "not UTF-8"),
        (b" " * (300 * 1024), "larger than 256 KiB"),
        (b'{"title": ' + b"1" * 5000 + b"}", "invalid JSON: beyond the parser's limits"),
        (b"[" * 100_000, "invalid JSON: beyond the parser's limits"),
        (b'{"title": "\\ud800"}', "title is not valid Unicode text"),
    ],
)
def test_a_bad_sidecar_is_ignored_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    image = every_source(tmp_path / "a.jpg")
    (tmp_path / "a.jpg.json").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        record = record_of(image)
    assert record.status == Status.DONE and record.title == "XMP title"
    assert f"ignored the sidecar of 'a.jpg': {reason}" in caplog.text


def test_a_linked_sidecar_is_no_sidecar(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = every_source(tmp_path / "a.jpg")
    (tmp_path / "elsewhere.json").write_text(json.dumps({"title": "Not mine"}))
    (tmp_path / "a.jpg.json").symlink_to(tmp_path / "elsewhere.json")
    with caplog.at_level(logging.WARNING):
        record = record_of(image)
    assert record.title == "XMP title" and record.sidecar_fields == ()
    assert "ignored the sidecar of 'a.jpg': a symbolic link, not a file" in caplog.text


def test_empty_sidecar_values_give_nothing(tmp_path: Path) -> None:
    image = every_source(tmp_path / "a.jpg")
    (tmp_path / "a.jpg.json").write_text(json.dumps({"title": "  ", "caption": "Kept"}))
    record = record_of(image)
    assert (record.title, record.caption, record.sidecar_fields) == (
        "XMP title",
        "Kept",
        ("caption",),
    )


def test_exif_in_a_tiff(tmp_path: Path) -> None:
    tags = Image.Exif()
    tags[IMAGE_DESCRIPTION] = "Scanned letter"
    tags[ORIENTATION] = 6
    path = tmp_path / "scan.tif"
    Image.new("L", (40, 20)).save(path, format="TIFF", exif=tags)
    facts = inspect_image(str(path))
    assert facts.text.description == "Scanned letter"
    assert (facts.width, facts.height) == (20, 40)


def test_defaults_without_any_metadata(tmp_path: Path) -> None:
    record = record_of(write_image(tmp_path / "plain.png"))
    assert (record.title, record.description, record.caption, record.alt_text) == (
        "plain.png",
        "Image description",
        None,
        None,
    )


# --- through a rescan, into the database -----------------------------------------------


def rescan(image_dir: Path, db: URL, **env: str) -> str:
    result = run("--rescan", env={**daemon_env(image_dir, db), **env}, cwd=image_dir.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rescan_records_the_fields_and_a_sidecar_edit(image_dir: Path, db_url: URL) -> None:
    every_source(image_dir / "a.jpg")
    write_image(image_dir / "plain.jpg")
    rescan(image_dir, db_url)
    store = ImageStore(db_url)
    try:
        row = row_of(store, "a.jpg")
        assert row is not None
        assert (row["title"], row["description"], row["caption"], row["alt_text"]) == (
            "XMP title",
            "XMP description",
            "XMP description",
            "XMP alt",
        )
        assert (row["width"], row["height"], row["mime_type"]) == (40, 20, "image/jpeg")
        plain = row_of(store, "plain.jpg")
        assert plain is not None and (plain["title"], plain["description"]) == (
            "plain.jpg",
            "Image description",
        )
        # A person edits the title in the database: a rescan keeps it ...
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE images SET title = 'Edited' WHERE file_name = 'a.jpg'")
        assert rescan(image_dir, db_url).startswith("rescan: 0 new, 0 changed, 2 unchanged")
        # ... and a sidecar written later (the image unchanged) overrides it.
        (image_dir / "a.jpg.json").write_text(json.dumps({"title": "From the sidecar"}))
        assert rescan(image_dir, db_url).startswith("rescan: 0 new, 1 changed, 1 unchanged")
        row = row_of(store, "a.jpg")
        assert row is not None and (row["title"], row["alt_text"]) == (
            "From the sidecar",
            "XMP alt",
        )
        assert rescan(image_dir, db_url).startswith("rescan: 0 new, 0 changed, 2 unchanged")
    finally:
        store.close()


def test_the_daemon_applies_a_sidecar_written_after_its_image(
    tmp_path: Path, image_dir: Path, db_url: URL
) -> None:
    every_source(image_dir / "a.jpg")
    with start(tmp_path, image_dir, db_url) as daemon:
        wait_rows(db_url, lambda rows: rows.get("a.jpg", {}).get("title") == "XMP title")
        sidecar = image_dir / "a.jpg.json"
        sidecar.write_text(json.dumps({"description": "Written later"}))
        rows = wait_rows(db_url, lambda r: r["a.jpg"]["description"] == "Written later")
        assert rows["a.jpg"]["title"] == "XMP title"
        assert daemon.stop() == 0


def test_the_fields_go_to_wordpress(
    image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    db = mariadb.create_database()
    write_tagged_jpeg(
        image_dir / "tagged.jpg",
        xmp=xmp_packet("Lighthouse", "The lighthouse at noon", "A white lighthouse on rocks"),
    )
    (image_dir / "tagged.jpg.json").write_text(json.dumps({"caption": "Photo: the editors"}))
    rescan(image_dir, db, **wp_env(live_wordpress))
    store = ImageStore(db)
    try:
        row = row_of(store, "tagged.jpg")
    finally:
        store.close()
    assert row is not None and row["wp_media_id"]
    media, _ = live_wordpress.api(f"/wp/v2/media/{row['wp_media_id']}", context="edit")
    assert media["title"]["raw"] == "Lighthouse"
    assert media["description"]["raw"] == "The lighthouse at noon"
    assert media["caption"]["raw"] == "Photo: the editors"
    assert media["alt_text"] == "A white lighthouse on rocks"


def test_long_texts_reach_wordpress_outside_the_query_string(
    image_dir: Path, mariadb: MariaDB, live_wordpress: WordPress
) -> None:
    # Percent-encoded, this is some 70 KB: past any server's request-line limit.
    story = "\u0416\u0438\u043b\u0438-\u0431\u044b\u043b\u0438 " * 900
    db = mariadb.create_database()
    write_tagged_jpeg(image_dir / "long.jpg", xmp=xmp_packet("Long story", story.strip()))
    (image_dir / "long.jpg.json").write_text(json.dumps({"alt_text": "A page of text"}))
    # Through a proxy built on http.server, which refuses request lines over 64 KiB
    # with 414, as Apache does over 8 KiB.
    proxy = FaultProxy(live_wordpress.url)
    try:
        api = proxy.url + "/wp-json/wp/v2/media"
        rescan(image_dir, db, **wp_env(live_wordpress, IMGWATCH_WP_API_URL=api))
    finally:
        proxy.close()
    store = ImageStore(db)
    try:
        row = row_of(store, "long.jpg")
    finally:
        store.close()
    assert row is not None and row["wp_media_id"] and row["status"] == Status.DONE
    media, _ = live_wordpress.api(f"/wp/v2/media/{row['wp_media_id']}", context="edit")
    assert media["title"]["raw"] == "Long story"
    assert media["description"]["raw"] == story.strip()
    assert media["caption"]["raw"] == story.strip()
    assert media["alt_text"] == "A page of text"
