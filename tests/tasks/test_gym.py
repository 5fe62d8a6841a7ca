"""reasoning-gym tasks as nlft tasks: rows, score_answer as the checker, the rule judge, bad names and options."""

from __future__ import annotations

import json

import pytest

from nlft.tasks.gym import GymTask
from nlft.tasks.registry import get_task, task_of
from nlft.tasks.sources import load_questions
from nlft.utils.files import DataError


def test_rows_are_seeded_keep_the_entry_and_differ_by_split():
    rows = load_questions("rg:spell_backward", split="train", limit=4, seed=1)
    assert rows == load_questions("rg:spell_backward", split="train", limit=4, seed=1)
    test = load_questions("rg:spell_backward", split="test", limit=4, seed=1)
    assert {r["question"] for r in rows}.isdisjoint({r["question"] for r in test})
    row = rows[0]
    assert row["task"] == "rg:spell_backward" and row["reference"] == f"#### {row['gold']}"
    assert row["meta"]["entry"]["answer"] == row["gold"]
    json.dumps(rows)  # rows are plain JSON
    word = row["meta"]["entry"]["metadata"]["word"]
    assert row["gold"] == word[::-1]


def test_score_answer_is_the_checker_and_the_judge_names_both_answers():
    row = load_questions("rg:spell_backward", limit=1, seed=2)[0]
    task = task_of(row)
    assert isinstance(task, GymTask)
    assert task.is_correct(f"Reversed letter by letter.\n#### {row['gold']}", row)
    assert not task.is_correct(f"The answer is {row['gold']}.", row, "strict")
    assert task.is_correct(f"The answer is {row['gold']}.", row, "flexible")
    assert task.is_correct(f"<answer>{row['gold']}</answer>", row, "flexible")
    assert not task.is_correct("#### nope", row)
    judgment = task.rule_judgment("#### nope", row)
    assert "'nope'" in judgment and repr(row["gold"]) in judgment and "word=" in judgment
    assert "no final answer" in task.rule_judgment("no idea", row)


def test_partial_scores_are_wrong():
    row = load_questions("rg:sentence_reordering", limit=1, seed=0)[0]
    task = task_of(row)
    assert 0.0 < task.score("xx", row) < 1.0  # reasoning-gym gives a wrong answer part of the score
    assert not task.is_correct("#### xx", row)
    assert task.is_correct(f"#### {row['gold']}", row)


def test_options_go_to_the_generator_and_bad_ones_are_named():
    rows = load_questions("rg:word_sorting:min_words=3,max_words=3", limit=2)
    assert all(len(r["gold"].split(", ")) == 3 for r in rows)
    assert rows[0]["task"] == "rg:word_sorting:min_words=3,max_words=3"
    with pytest.raises(ValueError, match="does not take these options"):
        load_questions("rg:spell_backward:colour=3", limit=1)


def test_unknown_task_lists_the_available_names():
    with pytest.raises(DataError, match=r"unknown reasoning-gym task 'spel_backward'; available: .*spell_backward"):
        get_task("rg:spel_backward")
    with pytest.raises(ValueError, match="rg:NAME"):
        get_task("rg:")


def test_numeric_names_keep_their_rows():
    row = load_questions("chain_sum", limit=1)[0]
    assert set(row) == {"id", "question", "reference", "gold"}  # no task, no meta: numeric rows as before
    assert task_of(row).name == "number"
