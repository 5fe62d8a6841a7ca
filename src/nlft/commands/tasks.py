"""List the tasks nlft can train and evaluate on, one line each, and the reasoning-gym tasks available.

A task says where questions come from, the solve prompt, how the final answer is read and checked,
and the rule judge of wrong answers. Pass it where commands take ``--dataset``: ``gsm8k``,
``chain_sum``, ``rg:NAME[:key=value,...]``, ``humaneval``, or a file with ``--answer-type``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nlft tasks``."""
    parser.add_argument("--no-gym", action="store_true", help="leave out the list of reasoning-gym tasks")


def run(args: argparse.Namespace) -> int:
    """Print the tasks (:func:`nlft.tasks.registry.task_lines`) and reasoning-gym's task names."""
    import textwrap

    from nlft.tasks.gym import gym_names
    from nlft.tasks.registry import task_lines

    lines = task_lines()
    width = max(len(spec) for spec, _ in lines)
    for spec, summary in lines:
        print(f"{spec:<{width}}  {summary}")
    print("\nfiles: --dataset FILE.jsonl|.json|.csv --answer-type number|math|choice[:index=0|1]|"
          "text[:match=contains,case=true,punct=true,articles=true,numbers=true]|code\n"
          "       where the fields are: --question-field, --answer-field, --choices-field, --labels, --id-field, "
          "--fields FILE (docs/data.md)")
    if not args.no_gym:
        names = gym_names()
        if names:
            print(f"\nreasoning-gym tasks ({len(names)}), as --dataset rg:NAME:")
            print(textwrap.fill(", ".join(names), width=100, initial_indent="  ", subsequent_indent="  "))
        else:
            print("\nreasoning-gym is not installed: pip install 'nlft[data]' for the rg:NAME tasks")
    return 0
