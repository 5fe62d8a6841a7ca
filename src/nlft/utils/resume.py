"""Resumable processing: append results to a JSONL file keyed by id, and skip done ids on restart.

A run killed at any point (even by SIGKILL) and restarted with the same arguments ends with the same
file as an uninterrupted run. Items are processed in fixed chunks of the full item list, so a chunk
always has the same members (batched generation with padding can depend on the batch's members); a
chunk that was only partly written is recomputed whole and only its missing rows are appended.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nlft.utils.files import DataError, append_jsonl, atomic_write_json, read_jsonl, repair_torn_tail

ProcessFn = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def run_resumable(items: Sequence[dict[str, Any]], process: ProcessFn, out_path: str | os.PathLike, *,
                  chunk_size: int, key: str = "id", progress: bool = True,
                  desc: str = "rows") -> list[dict[str, Any]]:
    """Process ``items`` in chunks with ``process`` and append its rows to ``out_path``.

    ``process(chunk)`` returns one row per item of ``chunk``, in order, each with the item's ``key``.
    Rows already in ``out_path`` (from an earlier, interrupted run) are kept and not recomputed. A row
    in the file whose key is not among the items, or a key present twice, raises
    :class:`~nlft.utils.files.DataError` (the file belongs to another run). Returns all rows in item order.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    keys = [item[key] for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"items have duplicate {key!r} values")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    repair_torn_tail(out_path)
    done: dict[Any, dict[str, Any]] = {}
    wanted = set(keys)
    for line, row in enumerate(read_jsonl(out_path), start=1):
        if row.get(key) not in wanted:
            raise DataError(f"row {key}={row.get(key)!r} is not part of this run's input; use a new output "
                            "directory or remove the file", path=out_path, line=line, field=key)
        if row[key] in done:
            raise DataError(f"duplicate {key} {row[key]!r}", path=out_path, line=line, field=key)
        done[row[key]] = row
    chunks = [list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]
    todo = [c for c in chunks if any(item[key] not in done for item in c)]
    bar = tqdm(total=len(items), initial=len(items) - sum(
        1 for c in todo for item in c if item[key] not in done), desc=desc, unit="row", disable=not progress)
    for chunk in todo:
        rows = process(chunk)
        if len(rows) != len(chunk) or any(r.get(key) != it[key] for r, it in zip(rows, chunk)):
            raise RuntimeError("process() must return one row per item, in order, with the same keys")
        fresh = [r for r in rows if r[key] not in done]
        append_jsonl(out_path, fresh)
        for r in fresh:
            done[r[key]] = r
        bar.update(len(fresh))
    bar.close()
    return [done[k] for k in keys]


def check_run_args(out_dir: str | os.PathLike, args: dict[str, Any], *, name: str = "args.json") -> None:
    """Store the arguments that decide a run's results in ``out_dir/name``; refuse different ones later.

    The first run writes the file. A rerun with the same arguments resumes; with different arguments
    it raises :class:`~nlft.utils.files.DataError` listing what changed, rather than mixing two runs in one file.
    """
    path = Path(out_dir) / name
    canonical = json.loads(json.dumps(args, default=str))
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != canonical:
            changed = sorted(k for k in set(stored) | set(canonical) if stored.get(k) != canonical.get(k))
            detail = "; ".join(f"{k}: {stored.get(k)!r} -> {canonical.get(k)!r}" for k in changed)
            raise DataError(f"this output directory holds a run with different arguments ({detail}); "
                            "rerun with the same arguments to resume, or choose another --out", path=path)
        return
    atomic_write_json(path, canonical)
