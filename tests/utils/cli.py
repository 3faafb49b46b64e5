"""Checks shared by the CLI tests of both sides."""

from __future__ import annotations

import argparse


def parsers(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """The parser and every sub-command's parser, by command line ("tinysphere devices list")."""
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += parsers(sub, f"{name} {sub_name}")
    return found


def undocumented(parser: argparse.ArgumentParser, name: str) -> list[str]:
    """Every option or argument of every (sub)command without help text."""
    return [f"{command}: {action.option_strings or action.dest}" for command, sub in parsers(parser, name)
            for action in sub._actions
            if not isinstance(action, argparse._SubParsersAction) and not action.help]
