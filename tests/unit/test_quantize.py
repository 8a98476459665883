"""``quantize``'s calibration folder: images told by their bytes or name, and what it ignored said."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.lifecycle.quantize import QuantizeError, calibration_images

from helpers.photos import jpeg


def test_calibration_takes_images_by_bytes_and_counts_the_rest(tmp_path: Path) -> None:
    # GIVEN a photo, a photo without a suffix in a subfolder, a text file and a hidden file
    (tmp_path / "a").mkdir()
    (tmp_path / "cat.jpg").write_bytes(jpeg("chelsea"))
    (tmp_path / "a" / "IMG_0001").write_bytes(jpeg("coffee"))
    (tmp_path / "notes.txt").write_text("calibration notes")
    (tmp_path / ".hidden.jpg").write_bytes(jpeg("rocket"))
    # WHEN the calibration images are chosen
    paths, ignored = calibration_images(tmp_path)
    # THEN both photos are used, and the two other files are counted with their reasons
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == ["a/IMG_0001", "cat.jpg"]
    assert ignored == {"hidden": 1, "not an image (neither its name nor its bytes)": 1}


def test_a_calibration_folder_without_images_says_what_it_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no photos here")
    with pytest.raises(QuantizeError, match=r"no calibration images in .* \(ignored 1 file: 1 not an image"):
        calibration_images(tmp_path)
