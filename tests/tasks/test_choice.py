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
    assert read_letter("B) It is the capital", CHOICES) == "B"  # the letter with words of its own
    assert read_letter("B) Rome", CHOICES) is None  # the letter of one option with the text of another
    assert read_letter("", CHOICES) is None


def test_row_layout_reference_and_judgment():
    assert ROW["question"].endswith("A) London\nB) Paris\nC) Rome\nD) Berlin")
    assert ROW["reference"].startswith("The answer is (B) Paris")
    assert (ROW["gold"], ROW["task"], ROW["meta"]) == ("B", "choice", {"choices": CHOICES})
    assert TASK.rule_judgment("#### C", ROW) == "The response chooses (C) Rome, but the right option is (B) Paris."
    assert "no final answer" in TASK.rule_judgment("I like Rome", ROW)
    assert TASK.rule_judgment("#### B", ROW).startswith("### The response is correct")


@pytest.mark.parametrize("answer", ["B", "b", 1, "Paris", "paris"])
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


# ---- answer keys: the choices' own labels decide; a key that could count from 0 or 1 is refused ----------------


@pytest.mark.parametrize("choices", [
    [{"text": t, "label": str(i + 1)} for i, t in enumerate(CHOICES)],       # ARC's question.choices
    {"text": CHOICES, "label": ["1", "2", "3", "4"]},                           # ARC on the Hugging Face hub
    {"1": "London", "2": "Paris", "3": "Rome", "4": "Berlin"},
])
def test_numbered_labels_decide_the_key(choices):
    """ARC numbers some questions' options 1-4 and keys them "1" for the first: gold A, not B."""
    assert TASK.make_row("q?", "1", row_id="x", raw={"choices": choices})["gold"] == "A"
    assert TASK.make_row("q?", "4", row_id="x", raw={"choices": choices})["gold"] == "D"
    row = TASK.make_row("q?", "2", row_id="x", raw={"choices": choices})
    assert row["meta"]["choices"] == CHOICES and row["question"].endswith("A) London\nB) Paris\nC) Rome\nD) Berlin")


def test_lettered_labels_and_a_key_outside_them():
    choices = {"text": CHOICES, "label": ["A", "B", "C", "D"]}
    assert TASK.make_row("q?", "C", row_id="x", raw={"choices": choices})["gold"] == "C"
    with pytest.raises(DataError, match=r"'E' is not among the 4 choices \(their labels.*A\) London; B\) Paris"):
        TASK.make_row("q?", "E", row_id="x", raw={"choices": choices}, path="arc.jsonl", line=3)


def test_an_ambiguous_numeric_key_names_the_row_and_the_options(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"question": "q?", "choices": CHOICES, "answer": "1"}) + "\n")
    with pytest.raises(DataError, match=r"mc\.jsonl, line 1, field 'answer': the answer '1' could count the 4 "
                                        r"choices from 0 \(option B\) or from 1 \(option A\): A\) London; B\) Paris; "
                                        r"C\) Rome; D\) Berlin\. Say how .*choice:index=0 or choice:index=1"):
        load_questions(str(path), answer_type="choice")
    assert load_questions(str(path), answer_type="choice:index=1")[0]["gold"] == "A"
    assert load_questions(str(path), answer_type="choice:index=0")[0]["gold"] == "B"
    assert load_questions(str(path), answer_type="choice:index=1")[0]["task"] == "choice"
    # keys that can count only one way, and numbers (MMLU stores 0-based integers)
    assert TASK.make_row("q?", "0", row_id="x", raw={"choices": CHOICES})["gold"] == "A"
    assert TASK.make_row("q?", "4", row_id="x", raw={"choices": CHOICES})["gold"] == "D"
    assert TASK.make_row("q?", 3, row_id="x", raw={"choices": CHOICES})["gold"] == "D"
    with pytest.raises(ValueError, match="index=0 or index=1"):
        load_questions(str(path), answer_type="choice:index=2")


# ---- no single committed choice: a list of every option, options in turn, letter and text that disagree ---------

LISTED = "Let me look at each option.\nA) London\nB) Paris\nC) Rome\nD) Berlin"


@pytest.mark.parametrize(("output", "why"), [
    (LISTED, "lists every option (A to D) without choosing one"),
    ("A\nB\nC\nD", "lists every option"),
    ("(A) London is in England.\n(B) Paris is in France.\n(C) Rome is in Italy.\n(D) Berlin is in Germany.",
     "lists every option"),
    ("The answer is A. Or the answer is B. Maybe the answer is C. No, the answer is D.",
     "states every option (A to D) as its answer in turn"),
    # SmolLM2-135M's own outputs: each option stated in turn, then one more
    ("A) London\n\nStep 1: The answer is A.\nStep 2: The answer is B.\nStep 3: The answer is C.\nStep 4: The answer "
     "is D.\n\nFinal Answer: C.", "states every option (A to D) as its answer in turn"),
    ("A) London\n\nStep 1: The answer is A.\n\nStep 2: The answer is B.\n\nStep 3: The answer is C.\n\nStep 4: The "
     "answer is D.\n\nStep 5: The answer is E.", "states every option (A to D) as its answer in turn"),
    ("Step 3: Determine the main language\n- London\n- Paris\n- Rome\n- Berlin", "lists every option"),
    ("Step 3: Determine the main language\n- London\n- Paris\n- Rome", "lists several options ((A), (B) and (C))"),
    ("A) London is in England.\nC) Rome is in Italy.", "lists several options ((A) and (C)) without choosing"),
    ("The answer is A) Paris", "writes the letter (A) with the text of option (B) Paris; the letter and the text "
                               "disagree"),
    ("#### A) London B) Paris C) Rome D) Berlin", "names several options ((A), (B), (C) and (D)) as its one answer"),
])
def test_no_single_committed_choice_is_incorrect_and_says_why(output, why):
    for mode in ("strict", "flexible") if output.startswith("####") else ("flexible",):
        assert TASK.extract(output, mode, CHOICES) is None
        for gold in "ABCD":  # credited with none of the options, whichever is right
            row = {**ROW, "gold": gold}
            assert not TASK.is_correct(output, row, mode)
        judgment = TASK.rule_judgment(output, ROW, mode)
        assert why in judgment and judgment.endswith("the right option is (B) Paris.")
        assert "####" not in judgment or mode == "strict"


def test_a_list_then_a_stated_answer_is_that_answer():
    assert TASK.extract(LISTED + "\nThe answer is (B).", "flexible", CHOICES) == "B"
    assert TASK.extract(LISTED + "\n#### C", "strict", CHOICES) == "C"
    assert TASK.extract("Option A is wrong.\nOption C is wrong.\nC) Rome", "flexible", CHOICES) == "C"


def test_letter_and_text_that_disagree_are_not_credited_by_the_letter():
    """'A) Enoxaparin' where Enoxaparin is option B: neither A nor B is credited, and the judgment names both."""
    drugs = ["Heparin", "Enoxaparin", "Warfarin", "Aspirin"]
    row = TASK.make_row("Which is a low molecular weight heparin?", "B", row_id="m", raw={"choices": drugs})
    for output in ("A) Enoxaparin", "The answer is A) Enoxaparin.", "#### (A) Enoxaparin"):
        assert not TASK.is_correct(output, row, "flexible")
        assert not TASK.is_correct(output, {**row, "gold": "A"}, "flexible")
        assert TASK.rule_judgment(output, row, "flexible") == (
            "The response writes the letter (A) with the text of option (B) Enoxaparin; the letter and the text "
            "disagree, so it chooses no single option; the right option is (B) Enoxaparin.")
    assert TASK.is_correct("B) Enoxaparin", row, "flexible")
