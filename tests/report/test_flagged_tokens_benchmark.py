"""benchmarks/flagged_tokens.py's diagnosis on hand-built views: what it counts and which way the views move."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from flagged_tokens import diagnose  # noqa: E402

from nlft.method.params import ScaleParams  # noqa: E402


def _ex(correct: bool, tokens: list[str], p_base: list[float], p_std: list[float],
        p_judge: list[float] | None) -> dict:
    return {"correct": correct, "tokens": tokens, "p_base": p_base, "p_std": p_std, "p_judge": p_judge,
            "spans": {}}


def test_a_wrong_letter_the_judgment_lowers_is_unflagged_but_the_standard_view_lowers_it():
    params = ScaleParams(r0=2.0, phrase_rule="none")
    examples = [
        # a multiple-choice output: the judgment names the right option, so P_judge of the wrong letter falls
        # (0.3 -> 0.1, r1 = 1/3: not flagged); the standard answer lowers it 6-fold (0.3 / 0.05 > r0)
        _ex(False, ["A", ")", " wife"], [0.3, 0.9, 0.5], [0.05, 0.9, 0.5], [0.1, 0.9, 0.5]),
        # an arithmetic output: the judgment raises the wrong number 4-fold over both views (flagged), the
        # standard view lowers it 20-fold; the opening word moves under neither
        _ex(False, ["The", " 186"], [0.3, 0.2], [0.3, 0.01], [0.3, 0.8]),
        _ex(True, ["B"], [0.5], [0.9], None),
    ]
    report = diagnose(examples, params)
    assert report["incorrect_outputs"] == 2 and report["correct_outputs"] == 1
    assert report["erroneous_tokens"] == 1 and report["erroneous_by_kind"]["digit"] == 1
    assert report["incorrect_with_no_flag"] == 1  # the letter output
    assert report["judgment_lowers_first_token"] == 1  # "A" (0.1 < 0.3); "The" is not lowered
    assert report["std_lowered_tokens"] == 2  # "A" and " 186"
    assert report["incorrect_with_std_lowered_token"] == 2
    # a stricter threshold keeps only the 20-fold drop
    strict = diagnose(examples, ScaleParams(r0=10.0, phrase_rule="none"))
    assert strict["std_lowered_tokens"] == 1 and strict["incorrect_with_std_lowered_token"] == 1


def test_the_draw_of_a_task_is_the_study_cells_training_records(tmp_path):
    """--task reads the committed task data: the draw is the one whose records sha the committed cell recorded."""
    import json

    from flagged_tokens import study_draw

    from nlft.study.data import records_sha
    from nlft.utils.files import read_jsonl

    task = "choice-of:family_relationships"
    path = study_draw(REPO / "docs" / "study", task, 50, 0, tmp_path)
    rows = list(read_jsonl(path))
    cells = [json.loads(line) for line in (REPO / "docs" / "study" / "cells.jsonl").read_text().splitlines()]
    recorded = {c["train_records_sha"] for c in cells
                if c["task"] == task and c.get("n") == 50 and c.get("seed") == 0 and c.get("train_records_sha")}
    assert len(rows) == 50 and records_sha(rows) in recorded
