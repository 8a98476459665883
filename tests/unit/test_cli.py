"""The command line's own face: its help, its version."""

from __future__ import annotations

import re

import pytest

from classifier import __version__
from classifier.cli import build_parser, main


def test_the_top_level_help_is_a_users_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    # what the tool is for, each command with a line of help, and how to start
    assert out.startswith("usage: python -m classifier [-h] [--version] COMMAND ...")
    assert "Image classification from a versioned model store" in out
    for command in ("publish", "evaluate", "promote", "quantize", "models", "rollback", "batch", "serve", "classify"):
        assert re.search(rf"^    {command} +\S", out, re.M), command
    first_session = out[out.index("a first session:"):]
    assert "python -m classifier serve" in first_session and "--store DIR" in first_session
    # and none of a developer's view: no choice list in braces, no docstring of the module
    assert "{publish," not in out and "positional arguments" not in out and "``" not in out


def test_every_command_line_of_the_help_parses() -> None:
    out = build_parser().format_help()
    commands = re.findall(r"^  python -m classifier (.+?)(?:\s+#.*)?$", out, re.M)
    assert len(commands) == 3
    for command in commands:
        build_parser().parse_args(command.split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"classifier {__version__}\n"


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(commands, dict)
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest} has no help"
