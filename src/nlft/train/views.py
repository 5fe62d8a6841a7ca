"""NLFT training records: validation and tokenization into the three views.

A record has ``question``, ``reference``, ``output``, ``correct`` (bool) and ``judgment`` (str, or
None for a correct output). Tokenization keeps the response tokens identical in every view: the
prompt of each view and the response are tokenized separately and concatenated. X_standard and
X_judge are X_base's prompt with the standard answer or the judgment after the question
(:func:`nlft.tasks.prompts.view_text`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nlft.method.clustering import word_ids_from_offsets
from nlft.tasks.prompts import JUDGE_VIEW, STANDARD_VIEW, prompt_ids, render, view_text
from nlft.utils.files import DataError

REQUIRED_FIELDS = ("question", "reference", "output", "correct", "judgment")


def validate_record(row: dict[str, Any], index: int, *, source: str = "dataset",
                    needs_judgment: bool = True) -> None:
    """Check one record; raise :class:`DataError` naming the source, row and field.

    Args:
        row: the record. index: its 0-based row number (reported 1-based as a line for files).
        source: the file or dataset name shown in errors.
        needs_judgment: whether an incorrect output must carry a judgment (NLFT and CUT need it).
    """
    line = index + 1
    for field in REQUIRED_FIELDS:
        if field not in row:
            raise DataError("missing field", path=source, line=line, field=field)
    for field in ("question", "reference", "output"):
        value = row[field]
        if not isinstance(value, str):
            raise DataError(f"expected a string, got {type(value).__name__}", path=source, line=line, field=field)
        if not value.strip():
            raise DataError("empty or whitespace-only text", path=source, line=line, field=field)
    if not isinstance(row["correct"], bool):
        raise DataError(f"expected true or false, got {row['correct']!r}", path=source, line=line, field="correct")
    judgment = row["judgment"]
    if judgment is not None and not isinstance(judgment, str):
        raise DataError(f"expected a string or null, got {type(judgment).__name__}", path=source, line=line,
                        field="judgment")
    if needs_judgment and not row["correct"] and (judgment is None or not judgment.strip()):
        raise DataError("an incorrect output needs a judgment (run `nlft judge` first)", path=source, line=line,
                        field="judgment")


def validate_records(rows: Sequence[dict[str, Any]], *, source: str = "dataset", needs_judgment: bool = True) -> None:
    """Validate every record (see :func:`validate_record`)."""
    for i, row in enumerate(rows):
        validate_record(row, i, source=source, needs_judgment=needs_judgment)


def response_ids_and_words(tokenizer: Any, output: str) -> tuple[list[int], list[int]]:
    """Token ids of a response (with the EOS token appended) and the word index of each token.

    Word indices come from the tokenizer's offsets (fast tokenizers); with a slow tokenizer every
    token is its own word. The EOS token is a word of its own.
    """
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(output, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        words = word_ids_from_offsets(output, [tuple(o) for o in enc["offset_mapping"]])
    else:
        ids = list(tokenizer(output, add_special_tokens=False)["input_ids"])
        words = list(range(len(ids)))
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        words.append((words[-1] + 1) if words else 0)
    return ids, words


def tokenize_record(
    row: dict[str, Any],
    tokenizer: Any,
    *,
    base_template: str | None,
    standard_template: str = STANDARD_VIEW,
    judge_template: str = JUDGE_VIEW,
    use_chat_template: bool | None = None,
    views: Sequence[str] = ("standard", "judge"),
) -> dict[str, Any]:
    """Token ids of the base prompt, the measurement-view prompts and the response of one record.

    ``base_template`` is X_base's prompt (``{question}``; None: the paper's solve instruction, A.2);
    ``standard_template`` and
    ``judge_template`` are the view texts appended to the question in it (or whole prompts when
    they hold ``{question}``, see :func:`nlft.tasks.prompts.view_text`).

    Returns a dict with ``base_prompt_ids``, ``std_prompt_ids`` (empty unless ``"standard"`` in
    views), ``judge_prompt_ids`` (empty for a correct output or unless ``"judge"`` in views),
    ``response_ids``, ``word_ids`` and ``correct``.
    """
    if base_template is None:
        from nlft.tasks.prompts import SOLVE_TEMPLATE

        base_template = SOLVE_TEMPLATE
    fields = {"question": row["question"], "reference": row["reference"], "judgment": row.get("judgment") or ""}
    response_ids, word_ids = response_ids_and_words(tokenizer, row["output"])
    std_ids: list[int] = []
    judge_ids: list[int] = []
    if "standard" in views:
        std_ids = prompt_ids(tokenizer, view_text(base_template, standard_template, **fields), use_chat_template)
    if "judge" in views and not row["correct"]:
        judge_ids = prompt_ids(tokenizer, view_text(base_template, judge_template, **fields), use_chat_template)
    return {
        "base_prompt_ids": prompt_ids(tokenizer, render(base_template, **fields), use_chat_template),
        "std_prompt_ids": std_ids,
        "judge_prompt_ids": judge_ids,
        "response_ids": response_ids,
        "word_ids": word_ids,
        "correct": bool(row["correct"]),
    }


def check_length(tokens: dict[str, Any], index: int, max_length: int, *, truncation: str = "error",
                 source: str = "dataset") -> dict[str, Any]:
    """Apply the length policy to a tokenized record.

    ``truncation="error"`` raises :class:`DataError` naming the row and the longest prompt;
    ``"response"`` cuts the end of the response (every view keeps the same response tokens) and
    raises only when a prompt alone leaves no room.
    """
    prompt_fields = {"base_prompt_ids": "question", "std_prompt_ids": "reference", "judge_prompt_ids": "judgment"}
    longest_field = max(prompt_fields, key=lambda k: len(tokens[k]))
    prompt_len = len(tokens[longest_field])
    total = prompt_len + len(tokens["response_ids"])
    if total <= max_length:
        return tokens
    if truncation == "response" and prompt_len < max_length:
        keep = max_length - prompt_len
        return {**tokens, "response_ids": tokens["response_ids"][:keep], "word_ids": tokens["word_ids"][:keep]}
    if truncation not in ("error", "response"):
        raise ValueError(f"truncation must be 'error' or 'response', got {truncation!r}")
    raise DataError(
        f"prompt ({prompt_len} tokens) + output ({len(tokens['response_ids'])} tokens) = {total} tokens exceeds "
        f"max_length={max_length}; shorten it, raise max_length, or set truncation='response'",
        path=source, line=index + 1, field=prompt_fields[longest_field] if prompt_len >= max_length else "output",
    )


def _known_templates() -> dict[str, str]:
    import hashlib

    from nlft.tasks.prompts import BASE_TEMPLATE, BRIEF_TEMPLATE, SOLVE_TEMPLATE

    return {hashlib.sha256(t.encode("utf-8")).hexdigest(): t for t in (SOLVE_TEMPLATE, BASE_TEMPLATE, BRIEF_TEMPLATE)}


def training_prompt(rows: Sequence[dict[str, Any]], *, template: str | None = None,
                    use_chat_template: bool | None = None, source: str = "dataset") -> tuple[str, bool | None]:
    """The one rule for the prompt every method trains under (X_base): ``(template, use_chat_template)``.

    ``template`` when given; else the prompt the records' outputs were generated with (their
    provenance, :func:`generation_prompt`), else the paper's solve instruction (appendix A.2), the
    prompt evaluation uses by default. ``use_chat_template`` left at None follows the provenance too:
    a file generated without the chat template trains without it.
    """
    if template is not None:  # set explicitly: the records' prompts are not read
        return template, use_chat_template
    from nlft.tasks.prompts import SOLVE_TEMPLATE

    found, chat = generation_prompt(rows, source=source)
    return found or SOLVE_TEMPLATE, (False if use_chat_template is None and chat is False else use_chat_template)


def generation_prompt(rows: Sequence[dict[str, Any]], *, source: str = "dataset") -> tuple[str | None, bool | None]:
    """The prompt the records' outputs were generated with, read from their provenance.

    X_base must be that prompt (P_base is then the distribution the outputs came from, and the
    trained prompt is the one used at inference). Each row's ``provenance.template`` holds the
    template's ``text`` (files written before 0.2 hold only its ``name`` and ``sha256``, which are
    matched against the built-in templates) and ``chat_template`` (whether generation asked for the
    chat template).

    Returns:
        ``(template, chat_template)``: the template text, or None when no row says how it was
        generated; ``chat_template`` None when not recorded.

    Raises:
        DataError: rows generated with different prompts (naming the first row that differs), or a
        template whose text is neither stored nor built in.
    """
    known = _known_templates()
    found: tuple[str, bool | None] | None = None
    first_line = 0
    for i, row in enumerate(rows):
        info = (row.get("provenance") or {}).get("template")
        if not isinstance(info, dict):
            continue
        text = info.get("text") if isinstance(info.get("text"), str) else known.get(str(info.get("sha256")))
        if text is None:
            raise DataError(f"the output was generated with the prompt template {info.get('name')!r} "
                            f"(sha256 {str(info.get('sha256'))[:12]}...), whose text the file does not hold; give "
                            "the same template to training (--base-template FILE)", path=source, line=i + 1,
                            field="provenance.template")
        chat = info.get("chat_template") if isinstance(info.get("chat_template"), bool) else None
        if found is None:
            found, first_line = (text, chat), i + 1
        elif found[0] != text:
            raise DataError(f"the outputs were generated with different prompts (this row's differs from line "
                            f"{first_line}'s); train each prompt's rows apart, or set the training prompt "
                            "explicitly (--base-template FILE)", path=source, line=i + 1, field="provenance.template")
    return (found[0], found[1]) if found else (None, None)
