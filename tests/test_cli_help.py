"""Every command's --help renders (help texts written for people may contain a literal '%')."""
from __future__ import annotations

import argparse

import pytest

from mivis.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _subparsers(sub, path + (name,))


def test_every_commands_help_renders(capsys):
    parser = build_parser()
    seen = 0
    for path, sub in _subparsers(parser):
        sub.format_help()  # raised TypeError on "50% of the epochs" before the formatter escaped it
        seen += 1
    assert seen >= 12
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["train", "--help"])
    assert e.value.code == 0 and "50%" in capsys.readouterr().out
