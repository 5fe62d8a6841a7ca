"""Building NLFT training data: questions -> outputs -> grades -> judgments -> NLFT records.

:func:`generate`, :func:`judge` and :func:`prepare` (both in a row) are the library form of
``nlft generate``, ``nlft judge`` and ``nlft prepare``: each writes into one folder, locked while it
runs, and returns what it wrote. Each stage appends to a JSONL file through
:func:`nlft.utils.resume.run_resumable`, so a killed run that is restarted with the same arguments
continues where it stopped.

NLFT record (one line of ``nlft.jsonl``, the trainer's input)::

    id          unique row id (question id, plus "-s<k>" when several samples per question)
    question    the task
    reference   the standard answer (full solution ending in '#### N')
    output      the chain-of-thought response to train on
    correct     whether the output's final answer equals the gold one
    judgment    analysis of the mistake (non-empty) when correct is false, else null
    gold        the normalised gold number (other tasks: their canonical answer)
    extracted   the number extracted from the output (null when none)
    question_id, sample, output_tokens
    provenance  {generator, template, sampling, seed, judge}
    task, meta  only on rows of tasks other than numbers (see nlft.tasks.base)

Grading, the rule judge, the LLM judge's instruction and where generation stops all come from
each row's task (:func:`nlft.tasks.registry.task_of`).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nlft.data.generation import derive_seed
from nlft.tasks.base import Mode, Task
from nlft.tasks.calculator import judge_prompt, says_correct
from nlft.tasks.prompts import SOLVE_TEMPLATE, render, uses_chat
from nlft.tasks.registry import common_task, is_number, resolve_prompt, task_of
from nlft.utils.resume import run_resumable

OUTPUTS_FILE = "outputs.jsonl"
NLFT_FILE = "nlft.jsonl"
SUMMARY_FILE = "summary.json"
# calculator: the number task's rule judge; rule: each row's task's rule judge (the calculator for numbers)
JUDGE_KINDS = ("calculator", "rule", "hf", "openai")
RULE_KINDS = ("calculator", "rule")
# Keys a row of a task other than numbers carries along from question to record.
TASK_KEYS = ("task", "meta")
BACKENDS = ("hf", "openai")


@dataclass
class BackendSpec:
    """Which model writes text: a local Hugging Face model or an OpenAI-compatible server."""

    backend: str = "hf"
    model: str = "smollm2"
    adapter: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 5
    chat_template: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")

    def describe(self) -> dict[str, Any]:
        """What goes into provenance (never the key itself)."""
        if self.backend == "hf":
            return {"backend": "hf", "model": self.model, "adapter": self.adapter}
        return {"backend": "openai", "model": self.model, "base_url": self.base_url}


@dataclass
class SamplingSpec:
    """Decoding settings of the generation stage."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    num_samples: int = 1
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class TemplateSpec:
    """The solve prompt: the paper's instruction (appendix A.2) unless a file is given."""

    text: str = SOLVE_TEMPLATE
    name: str = "paper-A.2-solve"
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        if "{question}" not in self.text:
            raise ValueError(f"the template {self.name!r} must contain the field {{question}}")
        self.sha256 = hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @classmethod
    def from_file(cls, path: str | None) -> TemplateSpec:
        """The default template, or the text of ``path``."""
        from nlft.tasks.prompts import read_template

        if path is None:
            return cls()
        return cls(text=read_template(path), name=Path(path).name)

    @classmethod
    def for_task(cls, task: Task, path: str | None = None) -> TemplateSpec:
        """The solve prompt of ``task``: the text of ``path``, else the task's own.

        The number task's own is the paper's instruction (as :meth:`from_file`).
        """
        if path is not None or is_number(task):
            return cls.from_file(path)
        return cls(text=task.solve_template, name=f"{task.name}-solve")

    @classmethod
    def for_rows(cls, rows: list[dict[str, Any]], path: str | None = None, *, prompt: str | None = None
                 ) -> TemplateSpec:
        """:meth:`for_task` of the rows' task (:func:`nlft.tasks.registry.common_task`).

        ``prompt``: a built-in prompt's name (``solve``, ``base``, ``brief``: the task's) or a template
        file, instead of ``path``; giving both is a ValueError.
        """
        task = common_task(rows)
        if prompt is None:
            return cls.for_task(task, path)
        if path is not None:
            raise ValueError("give the solve prompt once: --prompt NAME or --template FILE")
        name = Path(prompt).name if Path(prompt).is_file() else f"{task.name}-{prompt}"
        return cls(text=resolve_prompt(prompt, task), name=name)


def task_keys(row: dict[str, Any]) -> dict[str, Any]:
    """The ``task`` and ``meta`` of a row, where it has them (rows of numbers have neither)."""
    return {k: row[k] for k in TASK_KEYS if k in row}


def stop_rule(rows: list[dict[str, Any]]) -> tuple[bool, str | None]:
    """``(stop_at_answer, answer_line)`` of generation for ``rows`` (one task): numbers stop after '#### N'."""
    task = common_task(rows)
    return task.stops_at_answer, None if is_number(task) else task.answer_line


_MODELS: dict[tuple[str, str | None], tuple[Any, Any]] = {}
_PREFIXES: dict[tuple[str, str | None], Any] = {}


def _hf_model(name: str, adapter: str | None) -> tuple[Any, Any]:
    """Load (once per process) a model and its tokenizer."""
    key = (name, adapter)
    if key not in _MODELS:
        from nlft.utils.models import load_model, load_tokenizer

        _MODELS[key] = (load_model(name, adapter=adapter), load_tokenizer(name))
    return _MODELS[key]


def _openai_client(spec: BackendSpec) -> Any:
    from nlft.data.generation import OpenAIChatClient

    return OpenAIChatClient(spec.base_url or "", spec.model, api_key_env=spec.api_key_env,
                            max_concurrency=spec.max_concurrency, timeout=spec.timeout,
                            max_retries=spec.max_retries)


def complete_texts(spec: BackendSpec, prompts: list[str], seeds: list[int], *, max_new_tokens: int,
                   temperature: float, top_p: float, batch_size: int, stop_at_answer: bool,
                   progress: bool = False, answer_line: str | None = None) -> list[tuple[str, int | None]]:
    """Completions of plain-text prompts (one user turn each) by the backend of ``spec``.

    ``stop_at_answer``: end after the answer line (``answer_line``, a task's; None: ``#### N``).
    """
    if spec.backend == "hf":
        from nlft.data.generation import PrefixCache, generate_hf_with_counts

        model, tokenizer = _hf_model(spec.model, spec.adapter)
        chat = spec.chat_template and uses_chat(tokenizer, None)  # asked for, and the tokenizer has one
        # the solve prompt's instruction and few-shot block: computed once per process and model
        prefix = _PREFIXES.setdefault((spec.model, spec.adapter), PrefixCache())
        return list(generate_hf_with_counts(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
            top_p=top_p, seeds=seeds, batch_size=batch_size, chat=chat, stop_at_answer=stop_at_answer,
            progress=progress, prefix_cache=prefix, answer_line=answer_line))
    from nlft.data.generation import truncate_output

    with _openai_client(spec) as client:
        # The server stops at a new few-shot question; the answer line is cut after (truncate_output).
        results = client.complete_many(prompts, temperature=temperature, max_tokens=max_new_tokens,
                                       seeds=seeds, top_p=top_p, progress=progress,
                                       stop=["\nQuestion:"] if stop_at_answer else None)
    if stop_at_answer:
        results = [(truncate_output(text, answer_line), n) for text, n in results]
    return results


def _check_existing(out_path: str | Path, part: str, expected: dict[str, Any]) -> None:
    """Refuse to extend a file whose rows were made with other settings (``provenance[part]``)."""
    from nlft.utils.files import DataError, read_jsonl

    for line, row in enumerate(read_jsonl(out_path, tolerate_torn_tail=True), start=1):
        found = (row.get("provenance") or {}).get(part)
        if isinstance(found, dict):
            found = {k: v for k, v in found.items() if k in expected}
        if found != expected:
            raise DataError(f"this file was written with other {part} settings ({found} instead of "
                            f"{expected}); use another output directory", path=out_path, line=line,
                            field="provenance")


def expand_samples(questions: list[dict[str, Any]], num_samples: int) -> list[dict[str, Any]]:
    """One item per (question, sample): ids stay the question ids when ``num_samples == 1``."""
    items = []
    for q in questions:
        for k in range(num_samples):
            item = dict(q, question_id=q["id"], sample=k)
            if num_samples > 1:
                item["id"] = f"{q['id']}-s{k}"
            items.append(item)
    return items


def generate_outputs(questions: list[dict[str, Any]], out_path: str | Path, *, backend: BackendSpec,
                     sampling: SamplingSpec, template: TemplateSpec,
                     progress: bool = True) -> list[dict[str, Any]]:
    """Write one output per (question, sample) to ``out_path`` (resumable); return the rows."""
    items = expand_samples(questions, sampling.num_samples)
    generator = backend.describe()
    sampling_info = {"max_new_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                     "top_p": sampling.top_p}

    def process(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seeds = [derive_seed(sampling.seed, it["question_id"], it["sample"]) for it in chunk]
        prompts = [render(template.text, question=it["question"]) for it in chunk]
        stop, answer_line = stop_rule(chunk)
        texts = complete_texts(backend, prompts, seeds, max_new_tokens=sampling.max_new_tokens,
                               temperature=sampling.temperature, top_p=sampling.top_p,
                               batch_size=sampling.batch_size, stop_at_answer=stop, answer_line=answer_line)
        rows = []
        for it, row_seed, (text, n_tokens) in zip(chunk, seeds, texts):
            rows.append({
                "id": it["id"], "question_id": it["question_id"], "sample": it["sample"],
                "question": it["question"], "reference": it["reference"], "gold": it["gold"],
                "output": text, "output_tokens": n_tokens, **task_keys(it),
                "provenance": {"generator": generator,
                               "template": {"name": template.name, "sha256": template.sha256,
                                            "text": template.text, "chat_template": backend.chat_template},
                               "sampling": sampling_info, "seed": row_seed, "run_seed": sampling.seed},
            })
        return rows

    _check_existing(out_path, "generator", generator)
    _check_existing(out_path, "sampling", sampling_info)
    return run_resumable(items, process, out_path, chunk_size=sampling.batch_size, progress=progress,
                         desc="generate")


@dataclass
class JudgeSpec:
    """Who writes judgments of incorrect outputs: the task's rules (``rule``; ``calculator`` for numbers) or an LLM.

    ``template``: the LLM judge's instruction; None: each row's task's (the paper's A.1 for numbers).
    """

    kind: str = "calculator"
    backend: BackendSpec | None = None
    max_new_tokens: int = 256
    batch_size: int = 8
    # flexible: the answer line, else the phrasings models write instead (a chat model rarely writes '#### X';
    # strict grading would call its right answers wrong and train them away).
    grading: Mode = "flexible"
    template: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"unknown judge {self.kind!r}; choose one of {', '.join(JUDGE_KINDS)}")
        if self.kind not in RULE_KINDS and self.backend is None:
            raise ValueError(f"the {self.kind} judge needs a model backend")
        if self.grading not in ("strict", "flexible"):
            raise ValueError(f"unknown grading mode {self.grading!r}; choose 'strict' or 'flexible'")

    def describe(self) -> dict[str, Any]:
        """What goes into provenance."""
        info: dict[str, Any] = {"kind": self.kind, "grading": self.grading}
        if self.backend is not None and self.kind not in RULE_KINDS:
            info.update(self.backend.describe())
        return info


def rule_kind(task: Task) -> str:
    """The name of ``task``'s rule judge: ``calculator`` for numbers, else ``rule``."""
    return "calculator" if is_number(task) else "rule"


def judge_kind(kind: str | None, rows: list[dict[str, Any]]) -> str:
    """``--judge`` for ``rows``: None or ``rule`` is their task's rule judge (:func:`rule_kind`); ValueError for the
    calculator on a task other than numbers."""
    task = common_task(rows)
    if kind in (None, "rule"):
        return rule_kind(task)
    if kind == "calculator" and not is_number(task):
        raise ValueError(f"--judge calculator checks arithmetic; the {task.name} task's judge is --judge rule")
    return kind


def _grade(row: dict[str, Any], grading: Mode, kind: str) -> tuple[dict[str, Any], str | None, bool]:
    """``(row, extracted answer, correct)`` of one outputs row, by its task."""
    from nlft.utils.files import DataError

    for name in ("id", "question", "reference", "gold", "output"):
        if not isinstance(row.get(name), str):
            raise DataError(f"missing or non-string field in an outputs row (id {row.get('id')!r})", field=name)
    task = task_of(row)
    if kind == "calculator" and not is_number(task):
        raise ValueError(f"the calculator judge checks arithmetic; the {task.name} task's rows need --judge rule "
                         "(or an LLM judge)")
    return row, task.extract_for_row(row["output"], row, grading), task.is_correct(row["output"], row, grading)


def judge_outputs(rows: list[dict[str, Any]], out_path: str | Path, *, judge: JudgeSpec,
                  progress: bool = True) -> list[dict[str, Any]]:
    """Grade each output and judge the incorrect ones; write NLFT records to ``out_path`` (resumable)."""
    judge_info = judge.describe()

    def process(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        graded = [_grade(row, judge.grading, judge.kind) for row in chunk]
        wrong = [row for row, _, ok in graded if not ok]
        llm: dict[str, str] = {}
        if wrong and judge.kind not in RULE_KINDS:
            assert judge.backend is not None
            prompts = [judge_prompt(r["question"], r["output"], r["reference"],
                                    judge.template or task_of(r).judge_instruction) for r in wrong]
            seeds = [derive_seed(0, "judge", r["id"]) for r in wrong]
            texts = complete_texts(judge.backend, prompts, seeds, max_new_tokens=judge.max_new_tokens,
                                   temperature=0.0, top_p=1.0, batch_size=judge.batch_size,
                                   stop_at_answer=False)
            llm = {r["id"]: text.strip() for r, (text, _) in zip(wrong, texts)}
        records = []
        for row, extracted, ok in graded:
            provenance = dict(row.get("provenance") or {})
            provenance["judge"] = dict(judge_info)
            judgment = None
            if not ok:
                judgment = llm.get(row["id"])
                task = task_of(row)
                if judge.kind in RULE_KINDS or says_correct(judgment):
                    if judge.kind not in RULE_KINDS:
                        # The LLM called a wrong answer correct (or said nothing): keep a usable judgment.
                        provenance["judge"]["fallback"] = rule_kind(task)
                        provenance["judge"]["llm_judgment"] = judgment
                    judgment = task.rule_judgment(row["output"], row, judge.grading)
            records.append({
                "id": row["id"], "question": row["question"], "reference": row["reference"],
                "output": row["output"], "correct": ok, "judgment": judgment, "gold": row["gold"],
                "extracted": extracted, "question_id": row.get("question_id", row["id"]),
                "sample": row.get("sample", 0), "output_tokens": row.get("output_tokens"), **task_keys(row),
                "provenance": provenance,
            })
        return records

    _check_existing(out_path, "judge", judge_info)
    return run_resumable(rows, process, out_path, chunk_size=judge.batch_size, progress=progress,
                         desc="judge")


GRADINGS = {"strict": "strict: only the '####' answer line the prompt asks for",
            "flexible": "flexible: the '####' line, else the phrasings models write instead (numbers: the last number)"}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of an NLFT file: rows, correct/incorrect, judged, mean output tokens, the grading used and the
    outputs it read an answer from (``answered``)."""
    correct = sum(1 for r in records if r["correct"])
    tokens = [r["output_tokens"] for r in records if isinstance(r.get("output_tokens"), int)]
    gradings = {((r.get("provenance") or {}).get("judge") or {}).get("grading") for r in records} - {None}
    return {
        "rows": len(records),
        "questions": len({r.get("question_id", r["id"]) for r in records}),
        "correct": correct,
        "incorrect": len(records) - correct,
        "judged": sum(1 for r in records if not r["correct"] and r.get("judgment")),
        "accuracy": round(correct / len(records), 4) if records else 0.0,
        "mean_output_tokens": round(statistics.fmean(tokens), 1) if tokens else None,
        "grading": gradings.pop() if len(gradings) == 1 else None,
        "answered": sum(1 for r in records if r.get("extracted") is not None),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few human-readable lines."""
    lines = [f"rows: {summary['rows']} ({summary['questions']} questions)",
             f"correct: {summary['correct']}  incorrect: {summary['incorrect']}  "
             f"judged: {summary['judged']}  accuracy: {summary['accuracy']:.2%}",
             f"mean output tokens: {summary['mean_output_tokens']}"]
    if summary.get("grading") in GRADINGS:
        lines.append(f"grading: {GRADINGS[summary['grading']]}; an answer was read from "
                     f"{summary.get('answered', 0)} of {summary['rows']} outputs")
    return "\n".join(lines)


def grading_warning(summary: dict[str, Any]) -> str | None:
    """A warning when the grading read an answer from no output (strict: from fewer than half), else None.

    Such outputs are all graded incorrect whatever they say, and NLFT would train their content away.
    """
    rows, answered, grading = summary["rows"], summary.get("answered"), summary.get("grading")
    if not rows or answered is None or grading not in GRADINGS:
        return None
    if grading == "strict" and answered < rows / 2:
        return (f"WARNING: only {answered} of {rows} outputs carry the '#### <answer>' line that strict grading "
                f"reads; the other {rows - answered} are graded incorrect whatever they answer, and their judgments "
                "are about the missing line. Grade with --grading flexible (the default) unless the model writes "
                "that line.")
    if answered == 0:
        return (f"WARNING: no answer could be read from any of the {rows} outputs ({grading} grading), so all are "
                "graded incorrect. Look at outputs.jsonl: the prompt (--prompt, --template) or --max-new-tokens "
                "may keep the model from stating an answer.")
    return None


def spec_dict(*specs: Any) -> dict[str, Any]:
    """Dataclass specs as one JSON-able dict (for the run's stored arguments)."""
    out: dict[str, Any] = {}
    for spec in specs:
        if spec is not None:
            out[type(spec).__name__] = asdict(spec)
    return out



# ---- the stages as library calls ----------------------------------------------------------------------


@dataclass
class DataResult:
    """What :func:`generate`, :func:`judge` or :func:`prepare` wrote into ``out_dir``."""

    out_dir: Path
    rows: list[dict[str, Any]]  # the outputs (generate) or the NLFT records (judge, prepare)
    summary: dict[str, Any] | None = None  # summary.json (judge, prepare)
    seconds: float = 0.0

    @property
    def nlft_file(self) -> Path:
        return self.out_dir / NLFT_FILE

    @property
    def outputs_file(self) -> Path:
        return self.out_dir / OUTPUTS_FILE


def _open_folder(out_dir: str | Path, run_args: dict[str, Any] | None, args_file: str) -> Path:
    """Lock ``out_dir`` (a second process is refused) and check that a rerun has the same ``run_args``."""
    from nlft.utils.files import lock_dir
    from nlft.utils.resume import check_run_args

    out = lock_dir(out_dir)
    if run_args is not None:
        check_run_args(out, run_args, name=args_file)
    return out


def _finish(records: list[dict[str, Any]], out: Path, start: float) -> DataResult:
    """Write ``summary.json`` (the counts of :func:`summarize`, the wall time, the NLFT file)."""
    from nlft.utils.files import atomic_write_json

    seconds = round(time.perf_counter() - start, 2)
    summary = dict(summarize(records), seconds=seconds, nlft_file=str(out / NLFT_FILE))
    atomic_write_json(out / SUMMARY_FILE, summary)
    return DataResult(out, records, summary, seconds)


def generate(questions: list[dict[str, Any]], out_dir: str | Path, *, backend: BackendSpec | None = None,
             sampling: SamplingSpec | None = None, template: TemplateSpec | None = None,
             run_args: dict[str, Any] | None = None, progress: bool = True) -> DataResult:
    """Outputs of ``questions`` into ``out_dir/outputs.jsonl`` (resumable). ``run_args``: see :func:`prepare`."""
    start = time.perf_counter()
    template = template or TemplateSpec()
    out = _open_folder(out_dir, run_args and {**run_args, "template_sha256": template.sha256}, "args.json")
    rows = generate_outputs(questions, out / OUTPUTS_FILE, backend=backend or BackendSpec(),
                            sampling=sampling or SamplingSpec(), template=template, progress=progress)
    return DataResult(out, rows, seconds=round(time.perf_counter() - start, 2))


def judge(rows: list[dict[str, Any]], out_dir: str | Path, *, judge: JudgeSpec | None = None,
          run_args: dict[str, Any] | None = None, progress: bool = True) -> DataResult:
    """Grade ``rows`` (outputs) and judge the incorrect ones into ``out_dir/nlft.jsonl`` and ``summary.json``."""
    start = time.perf_counter()
    out = _open_folder(out_dir, run_args, "judge_args.json")
    records = judge_outputs(rows, out / NLFT_FILE, judge=judge or JudgeSpec(), progress=progress)
    return _finish(records, out, start)


def prepare(questions: list[dict[str, Any]], out_dir: str | Path, *, backend: BackendSpec | None = None,
            sampling: SamplingSpec | None = None, template: TemplateSpec | None = None,
            judge: JudgeSpec | None = None, run_args: dict[str, Any] | None = None,
            progress: bool = True) -> DataResult:
    """NLFT training data from questions: outputs, grades and judgments in ``out_dir`` (every stage resumable).

    Writes ``outputs.jsonl``, ``nlft.jsonl`` (the trainer's input) and ``summary.json``. ``run_args``:
    the settings that decide the results, stored in ``args.json`` (with the template's digest) so that
    a rerun into the same folder must match them (None: not checked). Raises DataError on bad rows,
    :class:`~nlft.data.generation.APIError` when a server fails.
    """
    start = time.perf_counter()
    template = template or TemplateSpec()
    out = _open_folder(out_dir, run_args and {**run_args, "template_sha256": template.sha256}, "args.json")
    outputs = generate_outputs(questions, out / OUTPUTS_FILE, backend=backend or BackendSpec(),
                               sampling=sampling or SamplingSpec(), template=template, progress=progress)
    records = judge_outputs(outputs, out / NLFT_FILE, judge=judge or JudgeSpec(), progress=progress)
    return _finish(records, out, start)


def read_outputs(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an outputs file (``id``, ``question``, ``reference``, ``output``; ``gold`` read from the
    reference's ``#### N`` when absent; ``task`` and ``meta`` for other tasks), ready for :func:`judge`.
    DataError naming the line and field."""
    from nlft.utils.files import DataError, iter_jsonl

    if not Path(path).is_file():
        raise DataError("input file not found (--input)", path=path)
    rows = []
    for line, row in iter_jsonl(path):
        try:
            task = task_of(row)
        except ValueError as err:
            raise DataError(str(err), path=path, line=line, field="task") from None
        if "gold" not in row and isinstance(row.get("reference"), str) and is_number(task):
            row["gold"] = task.gold_of(row, source=path, line=line)
        for name in ("id", "question", "reference", "gold", "output"):
            if not isinstance(row.get(name), str):
                raise DataError("missing or not a string", path=path, line=line, field=name)
        rows.append(row)
    return rows
