"""Command-line options shared by ``generate``, ``judge`` and ``prepare`` (standard library only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nlft.commands._types import add_answer_type_argument, at_least_one

# Options that do not change a run's results: a rerun may change them freely.
NON_RESULT_OPTIONS = {"out", "no_progress", "max_concurrency", "timeout", "max_retries", "command", "_run"}


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


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--backend", choices=("hf", "openai"), default="hf",
                   help="local Hugging Face model, or an OpenAI-compatible server (vLLM, llama.cpp, OpenAI)")
    g.add_argument("--model", default="smollm2", help="hf backend: model name or folder (smollm2: SmolLM2, offline)")
    g.add_argument("--adapter", default=None, help="hf backend: a LoRA adapter folder (self-study)")
    g.add_argument("--no-chat-template", action="store_true",
                   help="hf backend: send the prompt as plain text, without the tokenizer's chat template")
    g.add_argument("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model-name", default=None, help="model name sent to the server")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (optional for local servers)")
    g.add_argument("--max-concurrency", type=int, default=4, help="requests in flight at most")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    g.add_argument("--max-retries", type=int, default=5, help="retries on 429, 5xx, timeouts, bad JSON")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("generation")
    g.add_argument("--template", default=None, help="file with the solve prompt (uses {question}); default: the "
                   "task's solve prompt (for numbers the paper's instruction, A.2)")
    g.add_argument("--prompt", default=None, help="a built-in solve prompt by name (solve, base, brief: for "
                   "numbers the paper's three, another task's own) or a template file; instead of --template")
    g.add_argument("--num-samples", type=int, default=1, help="outputs per question")
    g.add_argument("--max-new-tokens", type=int, default=256,
                   help="default 256 keeps CPU runs short (generation also stops after the '#### N' line); "
                        "the paper uses 512")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0, help="run seed; each row's seed derives from it and the row id")
    g.add_argument("--batch-size", type=int, default=8)


def add_judge_arguments(parser: argparse.ArgumentParser, *, with_backend_defaults: bool) -> None:
    g = parser.add_argument_group("judge")
    g.add_argument("--judge", choices=("rule", "calculator", "hf", "openai"), default=None,
                   help="rule (default): the task's rule judge, no model (for numbers: calculator); hf: local model; "
                        "openai: OpenAI-compatible server")
    g.add_argument("--judge-model", default=None, help="hf judge: model name or folder (default: --model or smollm2)")
    g.add_argument("--judge-max-new-tokens", type=int, default=256)
    g.add_argument("--grading", choices=("strict", "flexible"), default="flexible",
                   help="flexible (default): the '####' line, else the phrasings models write (numbers: the last "
                        "number); strict: only the '####' line, for a model that writes it (the summary says which)")
    if with_backend_defaults:
        g.add_argument("--judge-base-url", default=None, help="openai judge server (default: --base-url)")
        g.add_argument("--judge-model-name", default=None, help="openai judge model name (default: --model-name)")


def _openai_backend(args: argparse.Namespace, model: str, base_url: str | None) -> Any:
    from nlft.data.build import BackendSpec

    return BackendSpec(backend="openai", model=model, base_url=base_url, api_key_env=args.api_key_env,
                       max_concurrency=args.max_concurrency, timeout=args.timeout, max_retries=args.max_retries)


def backend_spec(args: argparse.Namespace) -> Any:
    from nlft.data.build import BackendSpec
    from nlft.utils.models import check_model

    if args.backend == "openai":
        return _openai_backend(args, args.model_name or "default", args.base_url)
    check_model(args.model)  # a mistyped --model: one line, before the output folder is written
    return BackendSpec(backend="hf", model=args.model, adapter=args.adapter, chat_template=not args.no_chat_template)


def judge_spec(args: argparse.Namespace, rows: list[dict[str, Any]]) -> Any:
    """The judge of the flags; ``args.judge`` becomes the rows' rule judge's name when it is one (for args.json)."""
    from nlft.data.build import BackendSpec, JudgeSpec, judge_kind

    args.judge = judge_kind(args.judge, rows)
    backend = None
    if args.judge == "hf":
        model = args.judge_model or getattr(args, "model", None) or "smollm2"
        from nlft.utils.models import check_model

        check_model(model)
        backend = BackendSpec(backend="hf", model=model, chat_template=not getattr(args, "no_chat_template", False))
    elif args.judge == "openai":
        base_url = getattr(args, "judge_base_url", None) or args.base_url
        if not base_url:
            raise SystemExit("nlft: error: --judge openai needs --base-url (or --judge-base-url)")
        backend = _openai_backend(args, getattr(args, "judge_model_name", None) or args.model_name or "default",
                                  base_url)
    return JudgeSpec(kind=args.judge, backend=backend, max_new_tokens=args.judge_max_new_tokens,
                     batch_size=args.batch_size, grading=args.grading)


def sampling_spec(args: argparse.Namespace) -> Any:
    from nlft.data.build import SamplingSpec

    return SamplingSpec(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        seed=args.seed, num_samples=args.num_samples, batch_size=args.batch_size)


def generation_settings(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The keyword arguments of :func:`nlft.data.build.generate` and :func:`~nlft.data.build.prepare` from the flags."""
    from nlft.data.build import TemplateSpec

    return {"backend": backend_spec(args), "sampling": sampling_spec(args), "run_args": result_arguments(args),
            "template": TemplateSpec.for_rows(rows, args.template, prompt=getattr(args, "prompt", None)),
            "progress": not args.no_progress}


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


def result_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that decide a run's results, for :func:`nlft.utils.resume.check_run_args`."""
    values = {k: v for k, v in vars(args).items() if k not in NON_RESULT_OPTIONS and not callable(v)}
    if "split" in values and values["split"] is None:  # the split read by default
        values["split"] = "test" if values.get("dataset") == "humaneval" else "train"
    # Options newer than some run folders are left out at their defaults, so that those folders resume.
    for key, default in (("answer_type", "number"), ("prompt", None), ("choices_field", None), ("labels", None),
                         ("id_field", None), ("fields", None), ("offset", 0), ("split_fractions", None),
                         ("split_seed", 0)):
        if key in values and values[key] == default:
            del values[key]
    for key in ("data_dir", "template", "input", "adapter", "prompt", "fields"):
        if values.get(key) and (key != "prompt" or Path(values[key]).is_file()):
            values[key] = str(Path(values[key]).resolve())
    return values


def print_summary(result: Any) -> None:
    """Print the summary of an NLFT file (:class:`nlft.data.build.DataResult`), its path, and on stderr the warning
    of a grading that read no answer (:func:`nlft.data.build.grading_warning`)."""
    import sys

    from nlft.data.build import format_summary, grading_warning

    print(f"{format_summary(result.summary)}\nNLFT data: {result.nlft_file}")
    if warning := grading_warning(result.summary):
        print(f"\n{warning}\n", file=sys.stderr)
