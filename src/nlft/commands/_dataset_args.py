"""Command-line options that say which questions to read: the dataset, a file's fields and held-out part, a run's
own questions (standard library only; shared by ``generate``, ``judge``, ``prepare`` and ``eval``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nlft.commands._types import add_answer_type_argument, at_least_one


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dataset")
    g.add_argument("--dataset", default="gsm8k",
                   help="gsm8k, gsm_symbolic, chain_sum, basic_arithmetic, rg:NAME[:key=value,...] (any "
                        "reasoning-gym task), humaneval, a .jsonl/.csv file, or hf:NAME[:CONFIG] (see nlft tasks)")
    g.add_argument("--data-dir", default=None, help="folder with {split}.jsonl for gsm8k (default $NLFT_GSM8K_DIR)")
    g.add_argument("--split", default=None,
                   help="the split to read (default: train; test for humaneval, its only split); of a file split by "
                        "--split-fractions: train, validation or test")
    g.add_argument("--limit", type=at_least_one, default=None, help="keep the first N questions")
    add_file_arguments(g)
    add_answer_type_argument(g)


def add_file_arguments(parser: Any) -> None:
    """Where a question file's fields are (``--question-field`` ... ``--fields``) and its held-out part
    (``--offset``, ``--split-fractions``, ``--split-seed``); see docs/data.md."""
    parser.add_argument("--question-field", default="question",
                        help="the question's field: a name, a path (question.stem) or a template of several fields "
                             "('{Body} {Question}', 'Premise: {sentence1}\\nHypothesis: {sentence2}')")
    parser.add_argument("--answer-field", default="answer", help="the answer's field or path (answerKey, answer.value)")
    parser.add_argument("--choices-field", default=None,
                        help="choice: the options' field or path (default choices; question.choices, items with "
                             "their own labels as ARC stores them)")
    parser.add_argument("--labels", default=None,
                        help="choice: a label set as every row's options, e.g. entailment,neutral,contradiction; "
                             "rows whose label is missing or none of them are dropped and counted")
    parser.add_argument("--id-field", default=None, help="the row id's field (default id, else task_id)")
    parser.add_argument("--fields", default=None, metavar="FILE",
                        help="a YAML/JSON file with question, answer, choices, labels, id (the flags above win)")
    parser.add_argument("--offset", type=int, default=0, help="skip the first N questions of a file (before --limit)")
    parser.add_argument("--split-fractions", default=None, metavar="TRAIN,VAL,TEST",
                        help="split a file into train, validation and test (held-out) parts, e.g. 0.8,0.1,0.1, "
                             "by a shuffle seeded by --split-seed; --split picks the part")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of --split-fractions (default 0)")


def file_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`nlft.tasks.sources.load_questions` for a file from
    :func:`add_file_arguments`' flags (a label set makes ``args.answer_type`` choice)."""
    from nlft.tasks.layout import FieldMap

    fields = FieldMap.from_file(args.fields) if getattr(args, "fields", None) else FieldMap()
    defaults = {"question_field": "question", "answer_field": "answer"}
    given = {k: getattr(args, k, None) for k in ("question_field", "answer_field", "choices_field", "id_field")}
    if args.fields:  # the file's fields unless a flag names another
        given = {k: v for k, v in given.items() if v != defaults.get(k)}
    fields = fields.with_options(question=given.get("question_field"), answer=given.get("answer_field"),
                                 choices=given.get("choices_field"), id=given.get("id_field"), labels=args.labels)
    fractions = None
    if args.split_fractions:
        try:
            fractions = tuple(float(x) for x in args.split_fractions.split(","))
        except ValueError:
            raise ValueError(f"--split-fractions takes numbers such as 0.8,0.1,0.1, got {args.split_fractions!r}"
                             ) from None
    if args.offset < 0:
        raise ValueError(f"--offset must be 0 or more, got {args.offset}")
    if fields.labels and args.answer_type in (None, "number"):
        args.answer_type = "choice"  # a label set is a choice among the labels
    return {"fields": fields, "offset": args.offset, "fractions": fractions, "split_seed": args.split_seed}


def questions_of_run(args: argparse.Namespace) -> None:
    """``nlft eval --run``: the answer type the run's questions had when ``--answer-type`` is not given, and without
    ``--dataset`` the held-out part of those questions (the test part of a file split by ``--split-fractions``, the
    rows after the ``--limit`` that was trained on, the test split of a named dataset); DataError saying what is
    missing otherwise."""
    import sys

    from nlft.train.selection import data_source
    from nlft.utils.files import DataError

    source = data_source(args.run) or {}
    if args.answer_type is None:
        args.answer_type = source.get("answer_type", "number")
    if args.data is not None:
        return
    if not source:
        raise DataError("the run does not record the questions it trained on (no args.json of `nlft prepare` beside "
                        "its training data): give --dataset", path=args.run)
    args.data, args.data_dir = source["dataset"], args.data_dir or source.get("data_dir")
    for key in ("question_field", "answer_field", "choices_field", "labels", "id_field", "fields", "split_seed"):
        setattr(args, key, source.get(key, getattr(args, key)))
    if source.get("split_fractions"):
        args.split_fractions, args.split = source["split_fractions"], "test"
        held = f"the test part of {args.data} (--split-fractions {args.split_fractions})"
    elif Path(args.data).is_file():
        if not source.get("limit"):
            raise DataError(f"the run trained on every question of {args.data}: none is held out; give --dataset "
                            "(prepare with --split-fractions or --limit to hold questions out)", path=args.run)
        args.offset = int(source.get("offset") or 0) + int(source["limit"])
        held = f"{args.data} after the {args.offset} questions trained on"
    elif source.get("split") == "test":
        raise DataError(f"the run trained on the test split of {args.data}: give --dataset", path=args.run)
    else:
        args.split = "test"
        held = f"the test split of {args.data}"
    print(f"nlft eval: evaluating the run's held-out questions: {held}", file=sys.stderr)


def load_dataset_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    from nlft.tasks.sources import load_questions

    options = file_options(args)
    rows = load_questions(args.dataset, data_dir=args.data_dir, split=args.split, limit=args.limit, seed=args.seed,
                          answer_type=args.answer_type, **options)
    return rows


def record_split(args: argparse.Namespace, out: str) -> None:
    """``OUT/split.json``: the ids of every part of a file split by ``--split-fractions`` (which part was read, the
    fractions and the seed), so that which questions were held out can be read without rerunning the split."""
    from nlft.tasks.sources import load_questions, split_rows
    from nlft.utils.files import atomic_write_json

    options = file_options(args)
    fractions, seed = options.pop("fractions"), options.pop("split_seed")
    options.pop("offset")
    rows = load_questions(args.dataset, answer_type=args.answer_type, **options)
    parts = split_rows(rows, fractions, seed)
    atomic_write_json(Path(out) / "split.json", {
        "dataset": args.dataset, "fractions": list(fractions), "seed": seed, "read": args.split or "train",
        "ids": {name: [r["id"] for r in part] for name, part in parts.items()}})
