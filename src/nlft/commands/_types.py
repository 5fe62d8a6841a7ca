"""argparse types, actions and flags shared by the commands (standard library only)."""

from __future__ import annotations

import argparse
from typing import Any


def at_least_one(text: str) -> int:
    """argparse type of counts such as ``--limit``: an integer >= 1 (0 would evaluate or keep nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class OldName(argparse.Action):
    """A flag's earlier name, still accepted for one release: it sets the new flag's value and says so once."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import sys

        print(f"{parser.prog}: {option_string} is now {self.new} ({option_string} still works in this release)",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` (a folder, resumable) and ``--no-progress``."""
    parser.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_answer_type_argument(parser: Any) -> None:
    """``--answer-type``: what the answers of a question file are (on a parser or an argument group)."""
    parser.add_argument("--answer-type", default="number", metavar="TYPE",
                        help="answers of a .jsonl/.csv file: number (default), math, choice (rows with 'choices'), "
                             "text or text:case=true,punct=true (see nlft tasks)")
