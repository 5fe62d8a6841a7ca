"""Accuracy of a model on a question set: batched generation, grading, resumable predictions.

``evaluate`` writes into ``out_dir``:

- ``predictions.jsonl``: one row per question (``id``, ``question``, ``gold``, ``output``,
  ``extracted`` (strict), ``extracted_flexible``, ``correct`` (strict), ``correct_flexible``),
  appended after every batch, so that an interrupted evaluation resumes where it stopped;
- ``metrics.json``: ``accuracy_strict`` and ``accuracy_flexible``, each with its own Wilson 95%
  interval (``ci95_strict``, ``ci95_flexible``), ``n``, the number answered in the ``#### N``
  format, and the settings. Files written before the intervals were split hold one ``ci95``, the
  strict accuracy's; :func:`intervals` reads both kinds.

Generation goes through :func:`nlft.data.generation.generate_hf` (left padding, KV cache) by default, or
any ``generate(prompts) -> outputs`` callable, e.g. the vLLM one built by :func:`vllm_generate_fn`.

Answers are read and checked by the rows' task (:func:`nlft.tasks.registry.task_of`; rows without
``task`` are numbers), which also gives the default prompt and where generation stops.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nlft.tasks.base import Task
from nlft.tasks.prompts import SOLVE_TEMPLATE, prompt_ids, render, uses_chat
from nlft.tasks.prompts import TEMPLATES as TEMPLATES  # the prompts by name, as evaluation knew them
from nlft.utils.files import DataError, append_jsonl, atomic_write_json, read_jsonl, repair_torn_tail

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
SETTINGS = "eval_settings.json"

# generate(prompts, seeds) -> outputs: prompts are the filled templates (before any chat template), one seed per row
GenerateFn = Callable[[list[str], list[int]], list[str]]


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95% for the default ``z``); ``(0, 1)`` when n = 0.

    The bound at an extreme is exact: 0.0 when k = 0 and 1.0 when k = n (the formula leaves
    rounding residue such as 8.7e-19 there).
    """
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, center - half)
    hi = 1.0 if k == n else min(1.0, center + half)
    return lo, hi


def intervals(metrics: dict[str, Any]) -> dict[str, list[float] | None]:
    """``{"ci95_strict": [lo, hi], "ci95_flexible": [lo, hi]}`` of a metrics dict, new or old.

    Old files carry one ``ci95`` (the strict accuracy's); the flexible interval is then worked out
    from ``n_correct_flexible`` and ``n`` when they are there, else None.
    """
    out: dict[str, list[float] | None] = {}
    for grading in ("strict", "flexible"):
        ci = metrics.get(f"ci95_{grading}")
        if ci is None and grading == "strict":
            ci = metrics.get("ci95")
        if ci is None and isinstance(metrics.get(f"n_correct_{grading}"), int) and isinstance(metrics.get("n"), int):
            ci = list(wilson_interval(metrics[f"n_correct_{grading}"], metrics["n"]))
        out[f"ci95_{grading}"] = list(ci) if ci is not None else None
    return out


def eval_rows(rows: Sequence[dict[str, Any]], *, source: str = "dataset") -> list[dict[str, Any]]:
    """Normalise question rows to ``id``, ``question``, ``gold``: ``gold`` is read from ``reference`` when absent.

    Accepts the rows of :func:`nlft.tasks.sources.load_questions` and NLFT records alike; a row without
    ``id`` gets its index. Number rows get their gold number; rows of other tasks keep their ``gold``,
    ``task`` and ``meta``. Raises :class:`DataError` naming the row and field.
    """
    from nlft.tasks.registry import task_of

    out = []
    for i, row in enumerate(rows):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataError("missing or empty question", path=source, line=i + 1, field="question")
        try:
            task = task_of(row)
        except ValueError as err:
            raise DataError(str(err), path=source, line=i + 1, field="task") from None
        item = {"id": str(row.get("id", i)), "question": question, "gold": task.gold_of(row, source=source, line=i + 1)}
        if row.get("task"):
            item.update(task=task.name, meta=row.get("meta") or {})
        out.append(item)
    ids = [r["id"] for r in out]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise DataError(f"duplicate id {dup!r}", path=source, field="id")
    return out


def grade(output: str, gold: str, row: dict[str, Any] | None = None) -> dict[str, Any]:
    """Extracted answers and correctness of one output, strict (``#### N``) and flexible (last number).

    ``row``: the question's row, graded by its task (``gold`` is then its gold); None: a number.
    """
    from nlft.tasks.registry import task_of

    row = {"gold": gold} if row is None else {**row, "gold": gold}
    task = task_of(row)
    return {
        "extracted": task.extract_for_row(output, row, "strict"),
        "extracted_flexible": task.extract_for_row(output, row, "flexible"),
        "correct": task.is_correct(output, row, "strict"),
        "correct_flexible": task.is_correct(output, row, "flexible"),
    }


def summarize(predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (strict, flexible), counts and the Wilson 95% interval of each accuracy."""
    n = len(predictions)
    k = sum(bool(p["correct"]) for p in predictions)
    k_flex = sum(bool(p["correct_flexible"]) for p in predictions)
    return {
        "accuracy_strict": k / n if n else 0.0,
        "ci95_strict": list(wilson_interval(k, n)),
        "accuracy_flexible": k_flex / n if n else 0.0,
        "ci95_flexible": list(wilson_interval(k_flex, n)),
        "n": n,
        "n_correct_strict": k,
        "n_correct_flexible": k_flex,
        "answered_share": (sum(p["extracted"] is not None for p in predictions) / n) if n else 0.0,
    }


def paired_change(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], *,
                  key: str = "correct_flexible") -> dict[str, Any]:
    """Accuracy change between two evaluations of the same questions, with an exact paired test.

    ``before``/``after``: prediction rows (``id`` and ``key``) of the same question set. Only the
    questions that changed carry information: ``gained`` (wrong before, right after) and ``lost``.
    ``p_value`` is the exact two-sided sign test (McNemar's exact test) of gained vs lost.

    Returns ``{"n", "before", "after", "change", "gained", "lost", "p_value"}`` (accuracies as shares).
    """
    after_by_id = {row["id"]: bool(row[key]) for row in after}
    if len(after_by_id) != len(before) or any(row["id"] not in after_by_id for row in before):
        raise ValueError("paired_change needs the same questions (ids) before and after")
    pairs = [(bool(row[key]), after_by_id[row["id"]]) for row in before]
    n = len(pairs)
    gained = sum(1 for b, a in pairs if a and not b)
    lost = sum(1 for b, a in pairs if b and not a)
    m = gained + lost
    tail = sum(math.comb(m, i) for i in range(min(gained, lost) + 1)) / 2**m if m else 1.0
    acc_b = sum(b for b, _ in pairs) / n if n else 0.0
    acc_a = sum(a for _, a in pairs) / n if n else 0.0
    return {"n": n, "before": acc_b, "after": acc_a, "change": acc_a - acc_b, "gained": gained, "lost": lost,
            "p_value": min(1.0, 2 * tail)}


def _stops(task: Task | None) -> tuple[bool, str | None]:
    """``(stop_at_answer, answer_line)`` of ``task`` (None or numbers: stop after ``#### N``)."""
    from nlft.tasks.registry import is_number

    if task is None or is_number(task):
        return True, None
    return task.stops_at_answer, task.answer_line


def hf_generate_fn(model: Any, tokenizer: Any, *, batch_size: int, max_new_tokens: int, temperature: float,
                   top_p: float, use_chat_template: bool | None = None, share_prefix: bool = True,
                   task: Task | None = None) -> GenerateFn:
    """A ``generate(prompts, seeds) -> outputs`` over :func:`nlft.data.generation.generate_hf` (left padding, KV cache).

    ``share_prefix``: the prompt's token prefix common to all questions (instruction and few-shot
    examples) goes through the model once per evaluation; its key/value cache is reused by every batch.
    ``task``: where generation stops (after its answer line, when it has one; None: ``#### N``).
    """
    from nlft.data.generation import PrefixCache, generate_hf

    chat = uses_chat(tokenizer, use_chat_template)
    cache = PrefixCache() if share_prefix else None
    stop, answer_line = _stops(task)

    def generate(prompts: list[str], seeds: list[int]) -> list[str]:
        return generate_hf(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_p=top_p, seeds=seeds, batch_size=batch_size, progress=False, chat=chat,
                           prefix_cache=cache, stop_at_answer=stop, answer_line=answer_line)

    return generate


def vllm_available() -> bool:
    """Whether vLLM is installed and a CUDA GPU is present."""
    from importlib.util import find_spec

    if find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def vllm_generate_fn(model_path: str, tokenizer: Any, *, adapter: str | None, max_new_tokens: int,
                     temperature: float, top_p: float, seed: int, use_chat_template: bool | None = None,
                     dtype: str = "auto", gpu_memory_utilization: float = 0.85, task: Task | None = None) -> GenerateFn:
    """A ``generate(prompts, seeds) -> outputs`` on vLLM (GPU), with an optional LoRA adapter.

    Prompts are passed as token ids, tokenized as for the Hugging Face path and for training (chat
    template, special tokens only for plain prompts), so that both backends see identical inputs.
    Outputs are cut after the answer line like :func:`nlft.data.generation.generate_hf`'s (``task``'s).
    """
    from vllm import LLM, SamplingParams

    from nlft.data.generation import truncate_output

    lora_request = None
    kwargs: dict[str, Any] = {}
    if adapter:
        from vllm.lora.request import LoRARequest

        rank = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("r", 16)
        kwargs.update(enable_lora=True, max_lora_rank=max(8, int(rank)))
        lora_request = LoRARequest("adapter", 1, str(adapter))
    stop, answer_line = _stops(task)
    llm = LLM(model=model_path, dtype=dtype, seed=seed, gpu_memory_utilization=gpu_memory_utilization, **kwargs)

    def generate(prompts: list[str], seeds: list[int]) -> list[str]:
        params = [SamplingParams(temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                 max_tokens=max_new_tokens, seed=s) for s in seeds]
        inputs = []
        for text in prompts:
            inputs.append({"prompt_token_ids": prompt_ids(tokenizer, text, use_chat_template)})
        outs = llm.generate(inputs, params, lora_request=lora_request, use_tqdm=False)
        return [truncate_output(o.outputs[0].text, answer_line) if stop else o.outputs[0].text for o in outs]

    return generate


def build_prompts(questions: Sequence[str], template: str = SOLVE_TEMPLATE) -> list[str]:
    """The filled prompt template of each question (the generation backend applies the chat template)."""
    return [render(template, question=q) for q in questions]


def _check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    path = out_dir / SETTINGS
    if path.exists() and (out_dir / PREDICTIONS).exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise DataError(
                f"{out_dir} holds predictions made with other settings ({', '.join(changed)} differ); "
                "use another output folder, or delete it to start over", path=path)
    atomic_write_json(path, settings)


def evaluate(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    *,
    out_dir: str | os.PathLike,
    batch_size: int = 16,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    limit: int | None = None,
    template: str | None = None,
    use_chat_template: bool | None = None,
    generate: GenerateFn | None = None,
    progress: bool = True,
    source: str = "dataset",
    share_prefix: bool = True,
    desc: str = "eval",
) -> dict[str, Any]:
    """Generate an answer for each question, grade it and write ``predictions.jsonl`` and ``metrics.json``.

    Args:
        model, tokenizer: a causal LM (with its adapter applied, if any) and its tokenizer; the model
            is ignored when ``generate`` is given.
        rows: questions with ``id``, ``question`` and ``gold`` (or ``reference`` ending in ``#### N``).
        out_dir: where predictions and metrics go. Questions already in ``predictions.jsonl`` are
            skipped (resume); settings must match those of the earlier run.
        batch_size: questions per generation batch (predictions are appended after every batch).
        temperature: 0 for greedy decoding; > 0 samples (the paper: 0.6, with ``max_new_tokens=512``).
        seed: sampling seed; each question samples with ``derive_seed(seed, id)``, so its output does
            not depend on its batch, and a resumed run draws what an uninterrupted one would.
        limit: evaluate the first ``limit`` rows only.
        template: the prompt, with ``{question}`` (default: the task's solve prompt; for numbers the paper's
            solve instruction, A.2).
        use_chat_template: wrap prompts in the tokenizer's chat template (None: when it has one).
        generate: ``generate(prompts, seeds) -> outputs``; default Hugging Face ``generate``.
        share_prefix: with the default Hugging Face ``generate``, compute the key/value cache of the
            prompt prefix common to all questions once and reuse it (see :class:`nlft.data.generation.PrefixCache`).
        desc: the progress bar's label ("eval: base model").

    Returns:
        The metrics written to ``metrics.json`` (see :func:`summarize`), with the settings.
    """
    from nlft.data.generation import derive_seed
    from nlft.tasks.registry import common_task, is_number

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = eval_rows(rows, source=source)
    if limit is not None:
        items = items[:limit]
    task = common_task(items)
    template = template if template is not None else task.template(None)
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                "template": template, "chat_template": uses_chat(tokenizer, use_chat_template)}
    if not is_number(task):
        settings["task"] = task.name
    _check_settings(out, settings)
    pred_path = out / PREDICTIONS
    repair_torn_tail(pred_path)
    done = {str(p["id"]): p for p in read_jsonl(pred_path)}
    pending = [r for r in items if r["id"] not in done]
    if generate is None:
        model.eval()
        generate = hf_generate_fn(model, tokenizer, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_p=top_p, use_chat_template=use_chat_template,
                                  share_prefix=share_prefix, task=task)
    start = time.perf_counter()
    batches = [pending[i : i + batch_size] for i in range(0, len(pending), batch_size)]
    bar = None
    if progress and batches:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), desc=desc, unit="q", initial=0)
    for batch in batches:
        prompts = build_prompts([r["question"] for r in batch], template)
        outputs = generate(prompts, [derive_seed(seed, r["id"]) for r in batch])
        new = [{"id": r["id"], "question": r["question"], "gold": r["gold"], **{k: r[k] for k in ("task",) if k in r},
                "output": o, **grade(o, r["gold"], r)} for r, o in zip(batch, outputs, strict=True)]
        append_jsonl(pred_path, new)
        done.update({p["id"]: p for p in new})
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    predictions = [done[r["id"]] for r in items if r["id"] in done]
    metrics = {**summarize(predictions), "generated_now": len(pending),
               "wall_time_s": time.perf_counter() - start, "settings": settings}
    atomic_write_json(out / METRICS, metrics)
    return metrics


def evaluate_model(model_name: str, rows: Sequence[dict[str, Any]], *, out_dir: str | os.PathLike,
                   adapter: str | None = None, backend: str = "auto", dtype: str | None = None,
                   batch_size: int = 16, max_new_tokens: int = 512, temperature: float = 0.0, top_p: float = 1.0,
                   seed: int = 0, limit: int | None = None, template: str | None = None,
                   use_chat_template: bool | None = None, progress: bool = True,
                   source: str = "dataset") -> dict[str, Any]:
    """Load a model (and adapter) by name and :func:`evaluate` it; ``nlft eval`` as a library call.

    ``backend``: ``"hf"`` (Hugging Face generate; the adapter merged into the weights, on the GPU when
    there is one), ``"vllm"``, or ``"auto"`` (vLLM when installed and a GPU is present). Returns the
    metrics with ``model``, ``adapter`` and ``backend``.
    """
    from nlft.tasks.registry import common_task
    from nlft.utils.models import load_model, load_tokenizer, resolve_model_path

    task = common_task(rows)
    tokenizer = load_tokenizer(model_name)
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "vllm":
        model = None
        generate = vllm_generate_fn(resolve_model_path(model_name), tokenizer, adapter=adapter,
                                    max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                    use_chat_template=use_chat_template, dtype=dtype or "auto", task=task)
    else:
        import torch

        model = load_model(model_name, adapter=adapter, dtype=dtype)
        if adapter and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()  # LoRA folded into the weights: no extra matmuls per token
        if torch.cuda.is_available():
            model = model.to("cuda")
        generate = hf_generate_fn(model, tokenizer, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_p=top_p, use_chat_template=use_chat_template,
                                  task=task)
    metrics = evaluate(model, tokenizer, rows, out_dir=out_dir, batch_size=batch_size, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, seed=seed, limit=limit, template=template,
                       use_chat_template=use_chat_template, generate=generate, progress=progress, source=source)
    return {**metrics, "model": model_name, "adapter": adapter, "backend": backend}
