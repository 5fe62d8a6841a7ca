"""The ``nlft`` command line: one console script with subcommands.

Each subcommand lives in ``nlft.commands.<name>`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``: it parses, makes one library call and prints. Library errors become one-line
messages here, in one place (:func:`is_user_error`). Command modules import only the standard
library at module level, so that ``nlft --help`` is instant; heavy imports (torch, transformers,
datasets) happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import typing

# (name, module, one-line help). Modules are imported when the parser is built, so they stay light.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("quickstart", "nlft.commands.quickstart", "run the whole pipeline on a small model, offline"),
    ("generate", "nlft.commands.generate", "generate chain-of-thought outputs for questions"),
    ("judge", "nlft.commands.judge", "grade outputs and judge the incorrect ones"),
    ("prepare", "nlft.commands.prepare", "dataset -> outputs -> grades -> judgments -> NLFT jsonl"),
    ("train", "nlft.commands.train", "train with NLFT or a baseline (sft, dft, cut, reft, sdft)"),
    ("weights", "nlft.commands.weights", "export NLFT's per-token weights (for TRL or any trainer) as JSONL"),
    ("eval", "nlft.commands.evaluate", "accuracy of a model (and adapter) on a split"),
    ("saliency", "nlft.commands.saliency", "HTML saliency map of NLFT token scales"),
    ("compare", "nlft.commands.compare", "compare several run directories"),
    ("study", "nlft.commands.study", "small-data study: NLFT vs baselines over sizes and seeds"),
    ("tasks", "nlft.commands.tasks", "list the tasks (answer types, reasoning-gym names)"),
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is for ``-h``)."""

    def error(self, message: str) -> typing.NoReturn:
        # "argument --limit: must be at least 1" -> "--limit must be at least 1"
        message = re.sub(r"^argument (-[^:]+): (?=must )", r"\1 ", message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    from nlft import __version__

    parser = Parser(prog="nlft", description="Natural Language Fine-Tuning.")
    parser.add_argument("--version", action="version", version=f"nlft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # a command not shipped in this build
        # the docstring's line breaks and indented example blocks are kept as written
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.add_argument("--verbose", action="store_true",
                         help="show the libraries' own output: loading bars, log dicts, warnings")
        cmd.set_defaults(_run=module.run)
    return parser


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is bad input, a bad setting or a failing server: one line for the user, no traceback.

    The one place the library's errors become the command line's: DataError (a file, line and field),
    ValueError (a setting), FileNotFoundError, the OpenAI-compatible client's APIError, and an optional
    dependency that is not installed (an ImportError that says what to ``pip install``).
    """
    from nlft.data.generation import APIError
    from nlft.utils.files import DataError

    if isinstance(err, ImportError) and "pip install" in str(err):
        return True
    return isinstance(err, (DataError, ValueError, FileNotFoundError, APIError))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nlft`` console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from nlft.utils.console import quiet_libraries

    quiet_libraries(getattr(args, "verbose", False))
    try:
        return int(args._run(args) or 0)
    except Exception as err:
        if not is_user_error(err) or os.environ.get("NLFT_DEBUG"):
            raise  # a bug: the whole traceback (NLFT_DEBUG=1 shows it for user errors too)
        print(f"nlft {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nlft {args.command}: interrupted; {resume_note(args)}", file=sys.stderr)
        return 130


def resume_note(args: argparse.Namespace) -> str:
    """Where an interrupted command resumes from, in words: a training's last complete checkpoint (with
    ``--resume``), or the rows each stage has already written to its folder."""
    out = getattr(args, "out", None)
    if args.command == "train":
        from nlft.train.rundir import last_checkpoint

        checkpoint = last_checkpoint(out) if out and os.path.isdir(out) else None
        if checkpoint is None:
            return "no checkpoint was saved yet: the same command with --resume starts it again"
        return f"the same command with --resume continues from {checkpoint}"
    if out:
        return f"rerun the same command to resume (the finished rows are kept in {out})"
    return "rerun the same command to resume"


if __name__ == "__main__":
    sys.exit(main())
