"""Rule judgments a person (and X_judge) can learn from, for every task: under flexible grading never about the
'####' line; no Python escapes, no doubled full stops, whatever the output and the reference hold."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlft.tasks.registry import get_task

ODD = ["54\xa0Mbit/s.", "It is\n\n'Lima'.", "Done..", "#### ", "- 51", "6. Add them", "\\boxed{}", "A) B) C)",
       "The answer is 3.", "", "\t", 'He said "x\\y".']


def _rows():
    number = {"id": "n", "question": "q", "reference": "2 + 3 = 5\n#### 5", "gold": "5"}
    choice = get_task("choice").make_row("Speed?", "B", row_id="c", raw={"choices": ["10 Mbit/s", "54\xa0Mbit/s."]})
    text = get_task("text").make_row("Speed?", ["54\xa0Mbit/s.", "54"], row_id="t", raw={})
    contains = get_task("text:match=contains").make_row("Speed?", "54\xa0Mbit/s.", row_id="tc", raw={})
    math = get_task("math").make_row("Half of 3/2?", "\\frac{3}{4}", row_id="m", raw={})
    gym = get_task("rg:spell_backward").rows("train", 1, 0)[0]
    return [number, choice, text, contains, math, gym]


ROWS = _rows()


def _check(judgment: str, mode: str) -> None:
    assert judgment.strip()
    assert "\\x" not in judgment and "\\n" not in judgment and "\\t" not in judgment, judgment
    assert not re.search(r"(?<!\.)\.\.(?!\.)", judgment), judgment
    if mode == "flexible":
        assert "####" not in judgment and "in the form" not in judgment, judgment


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.get("task", "number"))
@pytest.mark.parametrize("output", ODD)
@pytest.mark.parametrize("mode", ["strict", "flexible"])
def test_judgments_read_as_plain_words(row, output, mode):
    from nlft.tasks.registry import task_of

    _check(task_of(row).rule_judgment(output, row, mode), mode)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ROWS), st.text(alphabet=st.sampled_from(list("AB5 .\n\xa0#-)(\\'\"Lima")), max_size=40))
def test_any_output_gets_a_plain_judgment(row, output):
    from nlft.tasks.registry import task_of

    for mode in ("strict", "flexible"):
        _check(task_of(row).rule_judgment(output, row, mode), mode)


def test_a_cut_off_output_is_said_to_be_cut_off_not_wrong():
    row = {"id": "n", "question": "q", "reference": "692 * 458 = 316936\n#### 316936", "gold": "316936",
           "output_tokens": 16, "provenance": {"sampling": {"max_new_tokens": 16}}}
    judgment = get_task("number").rule_judgment("692 girls * 458 = 3169", row, "flexible")
    assert "cut off at the token limit" in judgment and "is wrong" not in judgment
