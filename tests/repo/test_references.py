"""Every file the code, its comments and the docs name exists in this repository.

A reader who clones the project can follow each reference: a module named in a comment, a doc
linked from a docstring, a test named in a doc. A file that moves or goes away fails here until
every mention of it moves too.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

from helpers import ROOT

# What a reference looks like: a path with a folder and a known extension, or a bare document name.
PATH = re.compile(r"(?<![\w./:<*{$-])((?:[\w.-]+/)+[\w.-]+\.(?:py|md|json|toml|txt|sh|yml|yaml|jpg|png|lock)"
                  r"|[A-Z][\w-]*\.md)(?![\w/*<{-])")
# Where the names may be rooted: the repository, the runtime package (and its parent), the tests.
ROOTS = (ROOT, ROOT / "model", ROOT / "model" / "classifier", ROOT / "tests", ROOT / "streamlit-docker", ROOT / "bench")
# Files that are made at run time or live outside the repository, by where they are.
GENERATED = ("cdk.out/", "test-output/", ".model-store/", "bench/.work/", "node_modules/", "asset-output/",
             "site-packages/", ".venv/", "/proc/", "/sys/", "/mnt/", "/tmp/", "/etc/", "/usr/", "/var/", "/opt/")
TEXT = (".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".json", ".yml", ".yaml", ".dockerignore")


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names = [n for n in out.splitlines() if n.endswith(TEXT) or Path(n).name in ("Makefile", "Dockerfile", "run")]
    return [ROOT / n for n in names if (ROOT / n).is_file() and "requirements" not in n and not n.endswith(".lock")]


def prose(path: Path) -> str:
    """What a person reads in a file: all of a document, a Python module's comments and docstrings
    (its string literals are data: S3 keys, fixture file names)."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return text
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    nodes = [n for n in ast.walk(ast.parse(text))
             if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]
    docstrings = [doc for n in nodes if (doc := ast.get_docstring(n, clean=False))]
    return "\n".join(comments + docstrings)


def external(name: str) -> bool:
    """A path inside an installed library (``torchvision/transforms/_presets.py``), not this repository's."""
    top = name.split("/", 1)[0]
    if not top.isidentifier() or (ROOT / top).exists() or (ROOT / "model" / top).exists():
        return False
    return importlib.util.find_spec(top) is not None


def references(path: Path) -> list[str]:
    text = prose(path)
    found = []
    for match in PATH.finditer(text):
        name = match.group(1)
        before = text[max(0, match.start() - 12):match.start()]
        if "://" in before or external(name) or any(g in f"/{name}" or before.endswith(g.rstrip("/"))
                                                    for g in GENERATED):
            continue
        found.append(name)
    return found


def exists(name: str, where: Path) -> bool:
    if "/" not in name:  # a bare document name: anywhere in the repository
        return any(ROOT.glob(f"**/{name}"))
    candidates = [where.parent / name, *(root / name for root in ROOTS)]
    return any(c.exists() for c in candidates)


FILES = tracked_text_files()


def test_the_scan_finds_references() -> None:
    # the pattern is not so strict that it finds nothing: the README names many files
    assert len(references(ROOT / "README.md")) >= 5
    assert "docs/models.md" in references(ROOT / "README.md")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_file_named_exists(path: Path) -> None:
    missing = sorted({name for name in references(path) if not exists(name, path)})
    assert not missing, f"{path.relative_to(ROOT)} names files that are not in the repository: {missing}"


def test_a_missing_file_is_caught(tmp_path: Path) -> None:
    # GIVEN a comment that points outside the repository (as one did: a design page beside it)
    probe = tmp_path / "probe.py"
    probe.write_text("# the rules are in PLAN.md §2 and model/classifier/store.py\n")
    # THEN both names are found, and neither resolves
    assert references(probe) == ["PLAN.md", "model/classifier/store.py"]
    assert not exists("PLAN.md", probe) and not exists("model/classifier/store.py", probe)
