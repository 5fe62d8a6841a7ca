"""The change of a tuned model's accuracy against its base model's, on the same questions with the same settings.

``nlft eval`` with an adapter looks for the base model's predictions (``base-OUT`` next to its ``--out``,
``RUN/base-eval``, the quickstart's ``base-eval`` next to the run) and, when one folder holds every question
made with the same settings, pairs them with :func:`nlft.eval.accuracy.paired_change`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlft.eval.accuracy import PREDICTIONS, SETTINGS, paired_change
from nlft.utils.files import read_jsonl


def base_folder(out: str) -> Path:
    """Where ``--vs-base`` writes the base model's predictions: ``base-NAME`` next to the ``--out`` folder NAME."""
    path = Path(out)
    return path.parent / f"base-{path.name}"


def vs_base(metrics: dict[str, Any], out: str, run: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The paired change against the base model's predictions found next to ``out`` (or the run's), or None and
    a one-line note saying what is missing.

    A folder counts when its ``eval_settings.json`` equals these predictions' settings and it holds a prediction
    for every question evaluated. Returns ``{"folder", "strict": paired, "flexible": paired}`` with
    :func:`nlft.eval.accuracy.paired_change`'s dicts.
    """
    folders = [base_folder(out)] + ([Path(run) / "base-eval", Path(run).parent / "base-eval"] if run else [])
    after = list(read_jsonl(Path(out) / PREDICTIONS))
    ids = {p["id"] for p in after}
    seen = []
    for folder in dict.fromkeys(f.resolve() for f in folders):
        if not (folder / PREDICTIONS).is_file() or not (folder / SETTINGS).is_file():
            continue
        settings = json.loads((folder / SETTINGS).read_text(encoding="utf-8"))
        before = {p["id"]: p for p in read_jsonl(folder / PREDICTIONS)}
        if settings != metrics["settings"]:
            changed = sorted(k for k in set(settings) | set(metrics["settings"])
                             if settings.get(k) != metrics["settings"].get(k))
            seen.append(f"{folder} was made with other settings ({', '.join(changed)} differ)")
        elif not ids <= set(before):
            seen.append(f"{folder} holds {len(ids & set(before))} of these {len(ids)} questions")
        else:
            pairs = [before[p["id"]] for p in after]
            return {"folder": str(folder), "strict": paired_change(pairs, after, key="correct"),
                    "flexible": paired_change(pairs, after, key="correct_flexible")}, None
    why = "; ".join(seen) if seen else f"no base-model predictions in {base_folder(out)}"
    return None, f"change against the base model: not measured ({why}); --vs-base evaluates the base model too"


def format_vs_base(change: dict[str, Any]) -> str:
    """``against the base model (FOLDER): flexible 16.5% -> 31.0% (+14.5 points: 30 gained, 1 lost, p=3e-08);
    strict ...``."""

    def one(grading: str) -> str:
        c = change[grading]
        return (f"{grading} {c['before']:.1%} -> {c['after']:.1%} ({100 * c['change']:+.1f} points: {c['gained']} "
                f"gained, {c['lost']} lost, exact paired p={c['p_value']:.2g})")

    return f"against the base model ({change['folder']}, n={change['flexible']['n']}): {one('flexible')}; " \
           f"{one('strict')}"
