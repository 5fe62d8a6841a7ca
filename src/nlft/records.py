"""NLFT training records: validation and tokenization into the three views.

A record has ``question``, ``reference``, ``output``, ``correct`` (bool) and ``judgment`` (str, or
None for a correct output). Tokenization keeps the response tokens identical in every view: the
prompt of each view and the response are tokenized separately and concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nlft.clustering import word_ids_from_offsets
from nlft.io import DataError
from nlft.prompts import apply_chat, render

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


def _prompt_ids(tokenizer: Any, text: str, use_chat_template: bool | None) -> list[int]:
    wrapped = apply_chat(tokenizer, text, use_chat_template)
    # A chat template writes its own special tokens (BOS included); plain text gets the tokenizer's.
    special = wrapped == text
    return tokenizer(wrapped, add_special_tokens=special)["input_ids"]


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
    base_template: str,
    standard_template: str,
    judge_template: str,
    use_chat_template: bool | None = None,
    views: Sequence[str] = ("standard", "judge"),
) -> dict[str, Any]:
    """Token ids of the base prompt, the measurement-view prompts and the response of one record.

    Returns a dict with ``base_prompt_ids``, ``std_prompt_ids`` (empty unless ``"standard"`` in
    views), ``judge_prompt_ids`` (empty for a correct output or unless ``"judge"`` in views),
    ``response_ids``, ``word_ids`` and ``correct``.
    """
    fields = {"question": row["question"], "reference": row["reference"], "judgment": row.get("judgment") or ""}
    response_ids, word_ids = response_ids_and_words(tokenizer, row["output"])
    std_ids: list[int] = []
    judge_ids: list[int] = []
    if "standard" in views:
        std_ids = _prompt_ids(tokenizer, render(standard_template, **fields), use_chat_template)
    if "judge" in views and not row["correct"]:
        judge_ids = _prompt_ids(tokenizer, render(judge_template, **fields), use_chat_template)
    return {
        "base_prompt_ids": _prompt_ids(tokenizer, render(base_template, **fields), use_chat_template),
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
