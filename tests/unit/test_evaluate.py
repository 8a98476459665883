"""``evaluate``'s own arithmetic (classifier.lifecycle.evaluate), on outcomes written by hand: the
report's figures, the agreement of two versions, nearest-rank percentiles, and how an ImageFolder is
read. Evaluating a real model through the CLI, against torchvision, is in
tests/service/test_model_lifecycle.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from classifier.config import Settings
from classifier.lifecycle.evaluate import (
    DataSet,
    EvaluationError,
    Outcome,
    Sample,
    _percentile,
    agreement,
    summarise,
)
from classifier.serving.manager import LoadedModel, ModelManager
from classifier.store.layout import ModelStore

from helpers.photos import encode, jpeg, photo


@pytest.fixture(scope="module")
def model(published_store: Path) -> LoadedModel:
    """The published version, loaded as evaluate loads it."""
    version = ModelStore(published_store).current("resnet50")
    assert version is not None
    return ModelManager(Settings(model_store=published_store)).load(version)


def outcome(path: str, label: str, *top: str, ms: float = 10.0) -> Outcome:
    return Outcome(Sample(Path(path), label), tuple(top), ms)


# Six images of three classes: the top-1 is right for a1, b1 and c1; the truth is in the top-k
# of every image but a3.
OUTCOMES = [
    outcome("cat/a1.jpg", "cat", "cat", "dog", "car", ms=12.0),
    outcome("cat/a2.jpg", "cat", "dog", "cat", "car", ms=30.0),
    outcome("cat/a3.jpg", "cat", "dog", "car", "bus", ms=8.0),
    outcome("dog/b1.jpg", "dog", "dog", "cat", "car", ms=20.0),
    outcome("dog/b2.jpg", "dog", "cat", "dog", "bus", ms=16.0),
    outcome("car/c1.jpg", "car", "car", "bus", "dog", ms=40.0),
]


def test_summarise_counts_what_the_outcomes_say(model: LoadedModel, tmp_path: Path) -> None:
    data = DataSet(tmp_path, (*(o.sample for o in OUTCOMES), Sample(tmp_path / "x.jpg", "cat")), "f" * 64)
    errors = [{"file": "cat/x.jpg", "code": "invalid_image", "message": "truncated"}]
    report = summarise(model, data, OUTCOMES, errors)
    # counted by hand from OUTCOMES
    assert (report["images"], report["top1"], report["top5"]) == (6, 0.5, round(5 / 6, 6))
    assert report["per_class"] == {"car": {"images": 1, "top1": 1.0}, "cat": {"images": 3, "top1": round(1 / 3, 6)},
                                   "dog": {"images": 2, "top1": 0.5}}
    assert report["confusion"] == {"car": {"car": 1}, "cat": {"cat": 1, "dog": 2}, "dog": {"cat": 1, "dog": 1}}
    # nearest rank of the sorted latencies 8, 12, 16, 20, 30, 40: p50 is the 3rd, p95 the 6th
    assert report["latency_ms"] == {"p50": 16.0, "p95": 40.0}
    assert report["errors"] == errors
    # the data set is named by its path and digest, with every file it holds (refused ones too)
    assert report["data"] == {"path": str(tmp_path), "sha256": "f" * 64, "images": 7}
    assert (report["name"], report["version"], report["precision"]) == ("resnet50", model.version, "fp32")
    assert report["backend"] == "onnx"


def test_summarise_of_nothing_is_zeros(model: LoadedModel, tmp_path: Path) -> None:
    report = summarise(model, DataSet(tmp_path, (), "0" * 64), [], [])
    assert (report["images"], report["top1"], report["top5"]) == (0, 0.0, 0.0)
    assert report["per_class"] == {} and report["confusion"] == {}
    assert report["latency_ms"] == {"p50": 0.0, "p95": 0.0}


def test_agreement_pairs_images_by_path() -> None:
    # GIVEN another version's answers for the same images, listed in another order, and one image only it saw
    theirs = [
        outcome("car/c1.jpg", "car", "bus", "car", "dog"),     # top-1 differs; overlap 3 of 3
        outcome("cat/a1.jpg", "cat", "cat", "dog", "bus"),     # same top-1; overlap 2 of 3
        outcome("cat/a2.jpg", "cat", "dog", "cat", "car"),     # same top-1; overlap 3 of 3
        outcome("zzz/extra.jpg", "zzz", "cat", "dog", "car"),  # not in ours: ignored
    ]
    ours = OUTCOMES[:2] + OUTCOMES[5:]  # a1, a2, c1
    assert agreement(ours, theirs) == {"images": 3, "top1": round(2 / 3, 6),
                                       "top5_overlap": round((2 / 3 + 1 + 1) / 3, 6)}
    # top-k lists of different lengths count against the longer
    short = [outcome("cat/a1.jpg", "cat", "cat")]
    assert agreement(OUTCOMES[:1], short) == {"images": 1, "top1": 1.0, "top5_overlap": round(1 / 3, 6)}


def test_agreement_without_common_images_is_zero() -> None:
    assert agreement(OUTCOMES, [outcome("other/o.jpg", "cat", "cat")]) == {"images": 0, "top1": 0.0,
                                                                            "top5_overlap": 0.0}


@pytest.mark.parametrize(("values", "q", "want"), [
    ([], 50, 0.0),
    ([7.123], 50, 7.12),
    ([7.123], 95, 7.12),
    ([float(v) for v in range(1, 21)], 50, 10.0),   # rank ceil(0.50 * 20) = 10
    ([float(v) for v in range(1, 21)], 95, 19.0),   # rank ceil(0.95 * 20) = 19
    ([float(v) for v in range(1, 22)], 50, 11.0),   # rank ceil(0.50 * 21) = 11
    ([1.0, 2.0, 3.0], 0, 1.0),                      # rank 0 is the first
])
def test_percentiles_are_nearest_rank(values: list[float], q: float, want: float) -> None:
    assert _percentile(values, q) == want


# --- the data set -------------------------------------------------------------------------------------


def image_folder(root: Path) -> Path:
    """cat/ with two photos (one with an upper-case suffix), espresso/ with one; and files a scan skips."""
    (root / "cat").mkdir(parents=True)
    (root / "espresso").mkdir()
    (root / "cat" / "b.jpg").write_bytes(jpeg("chelsea"))
    (root / "cat" / "A.PNG").write_bytes(encode(photo("chelsea"), "PNG"))
    (root / "espresso" / "cup.jpg").write_bytes(jpeg("coffee"))
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.jpg").write_bytes(jpeg("rocket"))
    (root / ".cache").mkdir()
    (root / ".cache" / "x.jpg").write_bytes(jpeg("rocket"))
    (root / "README.md").write_text("a file beside the class folders")
    return root


def test_a_data_set_holds_the_images_of_its_label_folders(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data")
    data = DataSet.scan(root, ["cat", "espresso", "tabby"])
    # folders in order, files in order within each; hidden files and folders, and other suffixes, skipped
    assert [(s.path.relative_to(root).as_posix(), s.label) for s in data.samples] == [
        ("cat/A.PNG", "cat"), ("cat/b.jpg", "cat"), ("espresso/cup.jpg", "espresso")]
    # its identity: each file's relative path and content digest, computed here by hand
    digest = hashlib.sha256()
    for relative in ("cat/A.PNG", "cat/b.jpg", "espresso/cup.jpg"):
        digest.update(f"{relative}\0{hashlib.sha256((root / relative).read_bytes()).hexdigest()}\n".encode())
    assert data.sha256 == digest.hexdigest()


def test_a_data_sets_digest_follows_its_content_and_names(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data")
    labels = ["cat", "espresso"]
    first = DataSet.scan(root, labels).sha256
    assert DataSet.scan(root, labels).sha256 == first  # the same files: the same identity
    (root / "cat" / "b.jpg").write_bytes(jpeg("chelsea", quality=80))
    changed = DataSet.scan(root, labels).sha256
    (root / "cat" / "b.jpg").rename(root / "cat" / "c.jpg")
    renamed = DataSet.scan(root, labels).sha256
    assert len({first, changed, renamed}) == 3
    (root / "cat" / "notes.txt").write_text("edited, but not an image")
    assert DataSet.scan(root, labels).sha256 == renamed


def test_a_folder_that_is_not_a_label_is_refused_by_name(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data")
    with pytest.raises(EvaluationError, match=r"folder 'espresso' is not a label of this model$"):
        DataSet.scan(root, ["cat"])
    (root / "dog").mkdir()
    (root / "fox").mkdir()
    with pytest.raises(EvaluationError, match=r"folder 'dog' is not a label of this model \(nor are 2 more\)"):
        DataSet.scan(root, ["cat"])


def test_a_data_set_needs_a_directory_with_images(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="is not a directory: expected DIR/<label>/<images>"):
        DataSet.scan(tmp_path / "missing", ["cat"])
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("no image here")
    with pytest.raises(EvaluationError, match="holds no images in <label>/ folders"):
        DataSet.scan(tmp_path / "empty", ["cat"])
