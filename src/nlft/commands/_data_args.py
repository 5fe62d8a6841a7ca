"""Command-line options shared by ``generate``, ``judge`` and ``prepare`` (standard library only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# Options that do not change a run's results: a rerun may change them freely.
NON_RESULT_OPTIONS = {"out", "no_progress", "max_concurrency", "timeout", "max_retries", "command", "_run"}


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
