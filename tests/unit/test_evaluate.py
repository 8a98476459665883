"""``evaluate``'s refusals, which come before any model is loaded: a folder that is not a label names the
model it was checked against, and versions of different classes are not compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.cli import main
from classifier.lifecycle.evaluate import EvaluationError, check_comparable
from classifier.store.layout import ModelStore

from helpers.photos import jpeg
from helpers.stores import derive_version, export_version, small_version

NAME = "resnet50"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store whose current version has the labels tabby, wallet and rocket."""
    small_version(tmp_path / "v")
    ModelStore(tmp_path / "store").install_dir(tmp_path / "v")
    return tmp_path / "store"


def image_folder(root: Path, *labels: str) -> Path:
    for label in labels:
        (root / label).mkdir(parents=True)
        (root / label / "chelsea.jpg").write_bytes(jpeg("chelsea"))
    return root


def test_a_folder_that_is_not_a_label_names_the_current_model_and_version(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = ModelStore(store).current(NAME)
    data = image_folder(tmp_path / "data", "tabby", "daisy", "tulip")
    code = main(["evaluate", "--store", str(store), "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 2
    assert (f"folder 'daisy' is not a label of {NAME} {current} (the current version; --version picks another) "
            "(nor are 1 more); its 3 labels begin 'tabby', 'wallet', 'rocket'") in err


def test_versions_with_other_labels_are_not_compared(store: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN two versions whose labels differ: in number, and in one name
    models = ModelStore(store)
    first = models.current(NAME)
    assert first is not None
    exported = export_version(models, first, tmp_path / "export")
    fewer = models.install_dir(derive_version(exported, tmp_path / "fewer", labels=["tabby", "wallet"],
                                              created="2027-01-01T00:00:00Z"), make_current=False)
    renamed = models.install_dir(derive_version(exported, tmp_path / "renamed", labels=["tabby", "purse", "rocket"],
                                                created="2027-02-01T00:00:00Z"), make_current=False)
    # THEN comparing them is refused with the difference, before any model is loaded
    with pytest.raises(EvaluationError) as refused:
        check_comparable(models, NAME, first, fewer)
    assert str(refused.value).startswith(f"cannot compare {first} with {fewer}: their labels differ ({first} has 3 "
                                         f"labels, {fewer} has 2); agreement")
    with pytest.raises(EvaluationError, match=f"label 1 is 'wallet' in {first} and 'purse' in {renamed}"):
        check_comparable(models, NAME, first, renamed)
    check_comparable(models, NAME, first, first)
    # AND the command says so (these stand-in versions could not even be loaded: the refusal comes first)
    data = image_folder(tmp_path / "data", "tabby")
    code = main(["evaluate", "--store", str(store), "--data", str(data), "--compare", renamed])
    err = capsys.readouterr().err
    assert code == 2 and "their labels differ" in err and "cannot be loaded" not in err
    assert models.latest_evaluation(NAME, first) is None
