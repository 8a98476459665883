"""``models`` and ``rollback`` as a user runs them: what they print, their JSON, their exit statuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from classifier.cli import main
from classifier.store.layout import ModelStore

from helpers.stores import small_version

NAME = "resnet50"
DATES = ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store of three small versions, installed without making any current."""
    store = tmp_path / "store"
    models = ModelStore(store)
    versions = []
    for date in DATES:
        small_version(tmp_path / date[:7], seed=date, created=date)
        versions.append(models.install_dir(tmp_path / date[:7], make_current=False))
    return store, versions


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_names_the_data_set_of_each_latest_evaluation(three: tuple[Path, list[str]],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN one version evaluated on two data sets, the second more recently
    store, (a, b, _) = three
    models = ModelStore(store)
    models.set_current(NAME, a, reason="promote")
    models.save_evaluation(NAME, a, "1" * 64, {"created_at": "2026-04-01T00:00:00Z", "top1": 0.25, "images": 4,
                                               "data": {"path": "/data/old", "sha256": "1" * 64, "images": 4}})
    models.save_evaluation(NAME, a, "2" * 64, {"created_at": "2026-05-01T00:00:00Z", "top1": 0.5, "images": 6,
                                               "data": {"path": "/data/flowers", "sha256": "2" * 64, "images": 6}})
    # WHEN the versions are listed
    code, out, _ = run(capsys, "models", "--store", str(store))
    # THEN the evaluated version's line gives its latest score and names that data set by folder and hash
    assert code == 0
    line = next(line for line in out.splitlines() if a in line)
    assert line.startswith(f"* {a}")
    assert "0.500 on 6 images" in line and line.endswith(f"/data/flowers (data sha256 {'2' * 12})")
    assert "/data/old" not in out
    never = next(line for line in out.splitlines() if b in line)
    assert never.endswith(" -")


def test_models_shows_the_last_switches_newest_first(three: tuple[Path, list[str]],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store, (a, b, c) = three
    models = ModelStore(store)
    for version, reason in ((a, "publish"), (b, "quantize"), (c, "promote")):
        models.set_current(NAME, version, reason=reason, actor="alice@laptop")
    models.rollback(NAME, actor="bob@desk")
    code, out, _ = run(capsys, "models", "--store", str(store))
    assert code == 0
    switches = out[out.index("Last switches of CURRENT"):].splitlines()[1:]
    # numbered, newest first, each with when, why, from, to and who
    assert [line.split()[0] for line in switches] == ["#4", "#3", "#2", "#1"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line.split()[1]) for line in switches)
    assert re.search(rf"rollback \(undid #3\) +{c} -> {b}  by bob@desk$", switches[0])
    assert re.search(rf"promote +{b} -> {c}  by alice@laptop$", switches[1])
    assert re.search(rf"publish +\(none\) +-> {a}  by alice@laptop$", switches[3])


def test_models_json_has_versions_current_evaluations_and_every_switch(three: tuple[Path, list[str]],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    store, (a, b, c) = three
    models = ModelStore(store)
    models.set_current(NAME, a, reason="publish", actor="alice@laptop")
    models.set_current(NAME, b, reason="promote", actor="alice@laptop")
    code, out, _ = run(capsys, "models", "--store", str(store), "--json")
    assert code == 0
    listing = json.loads(out)
    assert (listing["name"], listing["current"], listing["store"]) == (NAME, b, str(store))
    assert [(v["version"], v["current"], v["labels"], v["evaluation"]) for v in listing["versions"]] == [
        (c, False, 3, None), (b, True, 3, None), (a, False, 3, None)]
    assert [(s["n"], s["reason"], s["from"], s["to"], s["actor"]) for s in listing["history"]] == [
        (2, "promote", a, b, "alice@laptop"), (1, "publish", None, a, "alice@laptop")]


def test_models_current_is_a_yes_or_no_a_script_can_branch_on(three: tuple[Path, list[str]], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    store, (a, _, _) = three
    # an empty store: exit 1, nothing printed (publishing is safe)
    assert run(capsys, "models", "--store", str(tmp_path / "empty"), "--current") == (1, "", "")
    # versions, none current: exit 2 and what to do (publishing over them would be wrong)
    code, out, err = run(capsys, "models", "--store", str(store), "--current")
    assert (code, out) == (2, "")
    assert "holds 3 version(s) of resnet50 but none is current" in err and "promote VERSION" in err
    # a current version: exit 0, the version alone
    ModelStore(store).set_current(NAME, a, reason="promote")
    assert run(capsys, "models", "--store", str(store), "--current") == (0, f"{a}\n", "")
    # a CURRENT that names no version: exit 2, not "empty"
    (store / "models" / NAME / "CURRENT").write_text("garbage\n")
    code, out, err = run(capsys, "models", "--store", str(store), "--current")
    assert (code, out) == (2, "") and "CURRENT holds an invalid version 'garbage'" in err


def test_rollback_says_what_it_undid(three: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    store, (a, b, _) = three
    models = ModelStore(store)
    models.set_current(NAME, a, reason="publish", actor="alice@laptop")
    models.set_current(NAME, b, reason="promote", actor="alice@laptop")
    code, out, _ = run(capsys, "rollback", "--store", str(store))
    assert code == 0 and models.current(NAME) == a
    assert out.startswith(f"resnet50: current version is now {a} (was {b}); undid #2 (promote by alice@laptop at ")
    # nothing left to undo: refused, exit 2, CURRENT unchanged
    code, out, err = run(capsys, "rollback", "--store", str(store))
    assert (code, out) == (2, "") and f"{a} is the first version that served" in err and models.current(NAME) == a
    # --to the current version: nothing to do, and said so
    assert run(capsys, "rollback", "--store", str(store), "--to", a) == (
        0, f"resnet50: {a} is already current; nothing changed\n", "")
