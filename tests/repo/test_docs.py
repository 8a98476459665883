"""The documentation tells the truth about the code: links resolve, every documented command line
parses with the real CLI, every ``make`` target exists, and the README's configuration table lists
exactly the variables the runtime reads."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from classifier.cli import build_parser

from helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]
FENCE = re.compile(r"```(?:sh|bash|console)?\n(.*?)```", re.S)


def shell_lines(path: Path) -> list[str]:
    """The commands of a document's code blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in FENCE.findall(path.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def test_the_readme_is_short_enough_to_read_in_ten_minutes() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if not re.match(r"[a-z]+://", target):
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


def documented_cli_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in shell_lines(doc):
            match = re.search(r"python -m classifier (.*)$", line)
            # Synopses ("[--store DIR]", "IMAGE...", "a|b") are not runnable command lines.
            if match and not re.search(r"\[|\.\.\.|\|", match[1]):
                words = shlex.split(re.sub(r"<[^>]+>", "X", match[1].removesuffix("&")))
                found.append((f"{doc.name}: {line}", words))
    return found


@pytest.mark.parametrize("where, words", documented_cli_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_documented_command_line_parses(where: str, words: list[str]) -> None:
    try:
        build_parser().parse_args(words)
    except SystemExit as exc:
        pytest.fail(f"{where}: the CLI refuses it (exit {exc.code})")


def test_some_command_lines_are_checked() -> None:
    assert len(documented_cli_commands()) >= 10


def test_every_documented_make_target_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    for doc in DOCS:
        for line in shell_lines(doc):
            for target in re.findall(r"(?:^|&&\s*)make ([a-z][a-z-]*)", line):
                assert target in targets, f"{doc.name}: `make {target}` is not a Makefile target"
        for target in re.findall(r"`make ([a-z][a-z-]*)", doc.read_text()):
            assert target in targets, f"{doc.name}: `make {target}` is not a Makefile target"


def documented_cdk_commands() -> list[tuple[str, str, list[str]]]:
    """Every ``cdk``/``npx cdk`` command line of the docs (code blocks and inline code) and the Makefile:
    (where, subcommand, its flags)."""
    found = []
    sources = [(doc.name, [*shell_lines(doc), *re.findall(r"`([^`\n]+)`", doc.read_text())]) for doc in DOCS]
    makefile = ROOT / "Makefile"
    sources.append((makefile.name, [line.strip() for line in makefile.read_text().splitlines()
                                    if line.startswith("\t")]))
    for where, lines in sources:
        for line in lines:
            for match in re.finditer(r"(?:^|\s)(?:npx )?cdk ([a-z]+)((?: +[^\s|`]+)*)", line):
                flags = [word.split("=")[0] for word in match[2].split() if word.startswith("-")]
                found.append((f"{where}: {line}", match[1], flags))
    return found


@functools.cache
def cdk_flags(command: str) -> frozenset[str]:
    """The options the pinned CDK CLI's ``COMMAND --help`` lists, with yargs' ``--no-`` form of each."""
    done = subprocess.run(["npx", "--no", "cdk", command, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    names = set()
    for line in done.stdout.splitlines():
        # "  --quiet, -q     Do not output ...": the names before the description's gap
        if option := re.match(r"^\s+(-\S.*?)(?:\s{2,}|$)", line):
            names.update(re.findall(r"-{1,2}[a-z][a-z0-9-]*", option[1]))
    return frozenset(names | {f"--no-{name[2:]}" for name in names if name.startswith("--")})


def test_every_documented_cdk_command_uses_flags_the_pinned_cli_knows() -> None:
    # An unknown flag only draws a warning ("Unknown option(s): --all. These will be ignored."),
    # which a reader following the docs should never see.
    commands = documented_cdk_commands()
    assert len(commands) >= 10 and {"synth", "deploy", "destroy", "bootstrap"} <= {c for _, c, _ in commands}
    for where, command, flags in commands:
        unknown = [flag for flag in flags if flag not in cdk_flags(command)]
        assert not unknown, f"{where}: `cdk {command}` does not know {', '.join(unknown)}"


def test_the_configuration_table_lists_every_variable_the_runtime_reads() -> None:
    # Settings reads most; the log and metric names are read where they are used.
    sources = "".join((ROOT / "model" / "classifier" / name).read_text()
                      for name in ("config.py", "observability/logs.py", "observability/metrics.py"))
    read = set(re.findall(r'env(?:\.get\(|\[)\s*"([A-Z_]+)"', sources)) | set(
        re.findall(r'_(?:int|float|bool|number)\(env, "([A-Z_]+)"', sources)) | set(
        re.findall(r'os\.environ\.get\("((?:POWERTOOLS|RECORDS)_[A-Z_]+)"', sources))
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Deploy")]
    first_cells = re.findall(r"^\| ([^|]+) \|", table, re.M)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z_]+)`", cell)}
    assert read - documented == set(), "read by the runtime, missing from the README's table"
    assert documented - read == set(), "in the README's table, never read by classifier.config"
