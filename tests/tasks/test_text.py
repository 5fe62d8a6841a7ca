"""Short text: normalised exact match, its options, aliases and bad rows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlft.tasks.registry import get_task
from nlft.tasks.sources import load_questions
from nlft.tasks.text import TextTask, normalize_text
from nlft.utils.files import DataError

TASK = TextTask()


@pytest.mark.parametrize(("raw", "want"), [
    ("  The Eiffel-Tower! ", "eiffel tower"), ("an apple", "apple"), ("ＡＢＣ", "abc"), ("New  York", "new york"),
])
def test_normalize_text(raw, want):
    assert normalize_text(raw) == want


def test_options_keep_case_punctuation_articles():
    row = {"gold": "Mt. Everest", "meta": {}}
    assert TASK.is_correct("#### mt everest", row)
    assert not get_task("text:case=true").is_correct("#### mt. everest", row)
    assert get_task("text:case=true").is_correct("#### Mt. Everest", row)
    assert not get_task("text:punct=true").is_correct("#### Mt Everest", row)
    assert not get_task("text:articles=true").is_correct("#### the Mt. Everest", row)
    assert TASK.is_correct("#### the Mt. Everest", row)
    assert get_task("text:case=true,punct=true").name == "text:case=true,punct=true"
    with pytest.raises(ValueError, match="text options"):
        get_task("text:colour=true")


def test_rows_aliases_and_judgment(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "Tallest mountain?", "answer": ["Mount Everest", "Everest"]}) + "\n"
                    + json.dumps({"question": "Capital of Peru?", "answer": "Lima"}) + "\n")
    first, second = load_questions(str(path), answer_type="text")
    assert first["gold"] == "Mount Everest" and first["meta"] == {"aliases": ["Everest"]}
    assert TASK.is_correct("It is Everest.\n#### everest", first)
    assert TASK.is_correct("The answer is Lima.", second, "flexible")
    assert not TASK.is_correct("The answer is Lima.", second)
    assert TASK.rule_judgment("#### Cusco", second) == "The response answers 'Cusco', but the correct answer is 'Lima'."
    path.write_text(json.dumps({"question": "q", "answer": "!!!"}) + "\n")
    with pytest.raises(DataError, match=r"line 1, field 'answer': .*empty once normalised"):
        load_questions(str(path), answer_type="text")
    path.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DataError, match="line 1, field 'answer': missing or empty answer"):
        load_questions(str(path), answer_type="text")


_phrase = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=1, max_size=4)


@given(_phrase, st.sampled_from(["#### {}", "#### **{}**", "The answer is {}.", "Answer: {}", "<answer>{}</answer>"]),
       st.sampled_from([str.upper, str.title, str.lower]))
def test_a_phrase_in_any_phrasing_and_case_matches(words, phrasing, case):
    gold = " ".join(words)
    output = "Thinking it over.\n" + phrasing.format(case(gold))
    assert TASK.is_correct(output, {"gold": gold}, "flexible")
    assert TASK.is_correct(output, {"gold": gold}, "strict") == phrasing.startswith("####")


def test_csv_files_take_an_answer_type(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,question,answer\na,Capital of Peru?,Lima\nb,Half of 3/2?,3/4\n")
    rows = load_questions(str(path), answer_type="text")
    assert [(r["id"], r["gold"], r["task"]) for r in rows] == [("a", "Lima", "text"), ("b", "3/4", "text")]
    assert load_questions(str(path), answer_type="math")[1]["gold"] == "3/4"
    path.write_text("id,question,answer\na,Capital of Peru?,\n")
    with pytest.raises(DataError, match=r"t\.csv, line 2, field 'answer': missing or empty answer"):
        load_questions(str(path), answer_type="text")


@pytest.mark.parametrize(("said", "gold"), [
    ("1", "one"), ("One", "1"), ("twenty-one", "21"), ("twenty one", "21"), ("12 apostles", "twelve apostles"),
    ("1,000", "1000"), ("zero", "0"),
])
def test_number_words_equal_their_digits(said, gold):
    assert TASK.is_correct(f"#### {said}", {"gold": gold, "meta": {}})
    assert not get_task("text:numbers=true").is_correct(f"#### {said}", {"gold": gold, "meta": {}}) or said == "1,000"


def test_number_words_do_not_merge_other_numbers():
    assert normalize_text("one hundred") == "1 hundred"
    assert not TASK.is_correct("#### two", {"gold": "twenty", "meta": {}})
    assert not TASK.is_correct("#### 3", {"gold": "one", "meta": {}})


def test_contains_reads_the_answer_inside_a_sentence():
    """match=contains: the accepted answer as whole words anywhere in the answer read (open-domain QA style)."""
    row = {"gold": "James I", "meta": {"aliases": ["King James"]}}
    said = "The first king of both England and Scotland was James I."
    contains = get_task("text:match=contains")
    assert contains.name == "text:match=contains"
    assert not TASK.is_correct(said, row, "flexible")          # exact match is the default
    assert contains.is_correct(said, row, "flexible")
    assert contains.is_correct("#### It was King James.", row)
    assert not contains.is_correct("#### James II", row)           # whole words only: 'i' is not 'ii'
    assert not contains.is_correct("The answer is Jameson Island.", row, "flexible")
    assert contains.rule_judgment("#### Charles I", row) == (
        "The response answers 'Charles I', which does not contain the correct answer 'James I'.")
    assert get_task("text:match=exact").name == "text"
    with pytest.raises(ValueError, match="match=exact or match=contains"):
        get_task("text:match=fuzzy")
