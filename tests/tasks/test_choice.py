"""Multiple choice: letters read from real phrasings, rows from lists, dicts, indexes and texts, and bad rows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlft.tasks.choice import ChoiceTask, read_letter
from nlft.tasks.sources import load_questions
from nlft.utils.files import DataError

CHOICES = ["London", "Paris", "Rome", "Berlin"]
TASK = ChoiceTask()
ROW = TASK.make_row("What is the capital of France?", "B", row_id="q", raw={"choices": CHOICES})


@pytest.mark.parametrize(("output", "strict", "flexible"), [
    ("The answer is (B)", None, "B"),
    ("B) Paris", None, "B"),
    ("Answer: b", None, "B"),
    ("It has to be option 2", None, "B"),
    ("#### C", "C", "C"),
    ("France's capital is Paris.\n#### (B) Paris", "B", "B"),
    ("#### b", "B", "B"),
    ("#### Paris", "B", "B"),
    ("#### option 4", "D", "D"),
    ("The correct answer is **D**.", None, "D"),
    ("\\boxed{A}", None, "A"),
    ("#### E", None, None),              # not one of the four
    ("#### option 7", None, None),
    ("A city on the Seine, for sure.", None, None),  # an article, not a letter
    ("I cannot tell.", None, None),
])
def test_letters_from_real_phrasings(output, strict, flexible):
    assert TASK.extract(output, "strict", CHOICES) == strict
    assert TASK.extract(output, "flexible", CHOICES) == flexible
    assert TASK.is_correct(output, ROW, "flexible") == (flexible == "B")


def test_read_letter_direct():
    assert read_letter("(C) Rome", CHOICES) == "C"
    assert read_letter("C: Rome", CHOICES) == "C"
    assert read_letter("[a]", CHOICES) == "A"
    assert read_letter("berlin", CHOICES) == "D"
    assert read_letter("B) Rome", CHOICES) == "B"  # the letter wins over a wrong text after it
    assert read_letter("", CHOICES) is None


def test_row_layout_reference_and_judgment():
    assert ROW["question"].endswith("A) London\nB) Paris\nC) Rome\nD) Berlin")
    assert ROW["reference"].startswith("The answer is (B) Paris")
    assert (ROW["gold"], ROW["task"], ROW["meta"]) == ("B", "choice", {"choices": CHOICES})
    assert TASK.rule_judgment("#### C", ROW) == "The response chooses (C) Rome, but the right option is (B) Paris."
    assert "no final answer" in TASK.rule_judgment("I like Rome", ROW)
    assert TASK.rule_judgment("#### B", ROW).startswith("### The response is correct")


@pytest.mark.parametrize("answer", ["B", "b", 1, "1", "Paris", "paris"])
def test_answer_as_letter_index_or_text(answer):
    assert TASK.make_row("q?", answer, row_id="x", raw={"choices": CHOICES})["gold"] == "B"


def test_choices_as_dict():
    row = TASK.make_row("q?", "C", row_id="x", raw={"choices": {"B": "two", "A": "one", "C": "three"}})
    assert row["meta"]["choices"] == ["one", "two", "three"] and row["gold"] == "C"


def test_bad_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "mc.jsonl"
    rows = [{"question": "ok?", "choices": ["a", "b"], "answer": "A"},
            {"question": "bad?", "choices": ["a", "b"], "answer": "C"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"mc\.jsonl, line 2, field 'answer': the answer 'C' is not among the 2"):
        load_questions(str(path), answer_type="choice")
    path.write_text(json.dumps({"question": "q", "answer": "A"}) + "\n")
    with pytest.raises(DataError, match=r"line 1, field 'choices'"):
        load_questions(str(path), answer_type="choice")
    path.write_text(json.dumps({"question": "q", "answer": "A", "choices": {"A": "x", "C": "y"}}) + "\n")
    with pytest.raises(DataError, match="A, B, C"):
        load_questions(str(path), answer_type="choice")
    path.write_text(json.dumps({"question": "q", "answer": 5, "choices": ["x", "y"]}) + "\n")
    with pytest.raises(DataError, match="not among"):
        load_questions(str(path), answer_type="choice")


_phrasings = st.sampled_from(["#### {l}", "#### ({l})", "The answer is ({l}).", "Answer: {low}", "{l}) {text}",
                              "The answer is {l}) {text}", "I choose option {n}.", "#### {text}", "**Answer: {l}**"])


@given(st.integers(min_value=2, max_value=8), st.data(), _phrasings,
       st.sampled_from(["", "Let me compare the options.\n", "Option A looks wrong.\n\n"]))
def test_any_phrasing_of_any_option_is_read(n, data, phrasing, lead):
    choices = [f"thing {i} here" for i in range(n)]
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    letter = "ABCDEFGH"[i]
    output = lead + phrasing.format(l=letter, low=letter.lower(), text=choices[i], n=i + 1)
    assert TASK.extract(output, "flexible", choices) == letter
    if phrasing.startswith("####"):
        assert TASK.extract(output, "strict", choices) == letter


def test_reading_for_a_row_knows_its_options():
    assert TASK.extract("#### E", "strict") == "E"  # without the row: any letter
    assert TASK.extract_for_row("#### E", ROW) is None  # four options: E is none of them
    assert TASK.extract_for_row("#### paris", ROW) == "B"
    assert [TASK.reward(o, ROW) for o in ("#### B", "#### C", "#### E", "nothing")] == [1.0, 0.1, 0.0, 0.0]
