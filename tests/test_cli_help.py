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


def test_a_literal_percent_in_help_is_printed_as_written():
    from mivis.cli._common import DefaultsFormatter
    p = argparse.ArgumentParser(prog="x", formatter_class=DefaultsFormatter)
    p.add_argument("--eps", default=0.1, help="0 until 50% of the epochs, then -0.05 by 75%")
    text = p.format_help()  # plain argparse raises "TypeError: %o format" here
    assert "50% of the epochs" in text and "75%" in text and "(default: 0.1)" in text
