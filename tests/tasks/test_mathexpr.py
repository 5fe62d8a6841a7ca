"""Math expressions: math-verify decides equality; rows, readers and the rule judge."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlft.tasks.mathexpr import MathTask, parse_math, same_math
from nlft.tasks.sources import load_questions
from nlft.utils.files import DataError

TASK = MathTask()


@pytest.mark.parametrize(("answer", "gold", "equal"), [
    ("3/4", "\\frac{3}{4}", True), ("0.75", "\\frac{3}{4}", True), ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("(1,2]", "(1, 2]", True), ("[1,2]", "(1,2]", False), ("x(x+2)", "x^2+2x", True),
    ("\\frac{1}{2}", "\\frac{1}{3}", False), ("\\dfrac{6}{8}", "3/4", True), (None, "1", False),
])
def test_math_verify_decides_equality(answer, gold, equal):
    assert same_math(answer, gold) is equal


def test_rows_read_expressions_and_solutions(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"question": "Half of 3/2?", "answer": "\\frac{3}{4}"}) + "\n"
                    + json.dumps({"question": "sqrt 8?", "answer": "8 = 4 * 2\n#### 2\\sqrt{2}"}) + "\n")
    first, second = load_questions(str(path), answer_type="math")
    assert (first["gold"], first["reference"], first["task"]) == ("\\frac{3}{4}", "#### \\frac{3}{4}", "math")
    assert second["gold"] == "2\\sqrt{2}" and second["reference"].startswith("8 = 4 * 2")
    assert TASK.is_correct("Half of 1.5 is 0.75.\n#### 0.75", first)
    assert not TASK.is_correct("The answer is \\boxed{3/4}", first, "strict")
    assert TASK.is_correct("The answer is \\boxed{3/4}", first, "flexible")
    assert TASK.rule_judgment("#### 1/2", first) == "The answer 1/2 is not equal to \\frac{3}{4}, the correct answer."
    assert "no final answer" in TASK.rule_judgment("I think \\boxed{1/2}", first)


def test_an_answer_math_verify_cannot_read_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "\\frac{"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl, line 1, field 'answer': math-verify cannot read"):
        load_questions(str(path), answer_type="math")
    assert parse_math("") == [] and parse_math("\\frac{") == []


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.integers(min_value=2, max_value=40),
       st.sampled_from(["#### {}", "So the result is \\boxed{{{}}}.", "The answer is ${}$.", "Final answer: {}"]),
       st.sampled_from(["frac", "slash", "decimal"]))
def test_a_fraction_in_any_form_and_phrasing_is_read_and_equal(num, den, phrasing, form):
    value = Fraction(num, den)
    gold = f"\\frac{{{value.numerator}}}{{{value.denominator}}}"
    if form == "frac":
        written = gold
    elif form == "slash":
        written = f"{num}/{den}"
    else:
        decimal = f"{float(value):.10g}"
        written = gold if Fraction(decimal) != value else decimal  # only exact decimals
    output = "Let me compute.\n" + phrasing.format(written)
    row = {"gold": gold}
    assert TASK.is_correct(output, row, "flexible")
    assert TASK.is_correct(output, row, "strict") == phrasing.startswith("####")
