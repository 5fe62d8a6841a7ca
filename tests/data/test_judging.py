"""The calculator judge and its safe arithmetic evaluator."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlft.data.judging import UnsafeExpression, calculator_judgment, find_steps, safe_eval, says_correct
from nlft.tasks.prompts import CORRECT_JUDGMENT

REFERENCE = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
             "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("48/2", Fraction(24)),
        ("48+24", Fraction(72)),
        ("0.2*50", Fraction(10)),
        ("12/60", Fraction(1, 5)),
        ("(3+4)*2", Fraction(14)),
        ("2^3", Fraction(8)),
        ("2**3", Fraction(8)),
        ("1,000-1", Fraction(999)),
        ("$5 x 3", Fraction(15)),
        ("20% * 50", Fraction(10)),
        ("-3 + 1", Fraction(-2)),
        ("7 // 2", Fraction(3)),
    ],
)
def test_safe_eval(expression: str, value: Fraction) -> None:
    assert safe_eval(expression) == value


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "abs(-1)", "x.y", "1 if 1 else 2", "10**10000", "1/0", "'a'*3",
     "[1][0]", "True + 1"],
)
def test_safe_eval_rejects_non_arithmetic(expression: str) -> None:
    with pytest.raises(UnsafeExpression):
        safe_eval(expression)


def test_wrong_annotated_step_and_final_answer() -> None:
    output = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
              "Natalia sold 48+24 = <<48+24=70>>70 clips.\n#### 70")
    assert calculator_judgment(output, REFERENCE, "72") == (
        "Step 2 computes 48+24 = 70, but 48+24 = 72. "
        "The final answer 70 does not match the correct answer 72; "
        "the reference computes 48/2 = 24, then 48+24 = 72."
    )


def test_unannotated_equations_are_checked() -> None:
    output = "A total of 48 + 12 = 50 clips were sold in April, and 50 / 2 = 25 clips in May.\n#### 25"
    assert calculator_judgment(output, REFERENCE, "72") == (
        "The equation 48 + 12 = 50 is wrong: 48 + 12 = 60, not 50. "
        "The final answer 25 does not match the correct answer 72; "
        "the reference computes 48/2 = 24, then 48+24 = 72."
    )


def test_right_arithmetic_wrong_reasoning() -> None:
    output = "She sold 48 * 2 = 96 clips in May, so 48 + 96 = 144.\n#### 144"
    judgment = calculator_judgment(output, REFERENCE, "72")
    assert judgment.startswith("Every computation in the response is arithmetically right, so the mistake is "
                               "in the reasoning: it computes the wrong quantities. It never obtains "
                               "48/2 = 24 (step 1 of the reference).")
    assert "The final answer 144 does not match the correct answer 72" in judgment


def test_missing_final_answer() -> None:
    judgment = calculator_judgment("I think she sold 60 clips.", REFERENCE, "72")
    assert judgment == ("The response gives no final answer in the form '#### <number>' (the last number "
                        "it mentions is 60); the correct answer is 72; the reference computes 48/2 = 24, "
                        "then 48+24 = 72.")


def test_correct_output_gets_the_correct_judgment() -> None:
    assert calculator_judgment("48/2 = 24 and 48 + 24 = 72.\n#### 72", REFERENCE, "72") == CORRECT_JUDGMENT


def test_rounded_values_are_accepted() -> None:
    steps, annotated = find_steps("Each gets <<10/3=3.33>>3.33 dollars and <<150/12=12>>12 full boxes")
    assert annotated
    assert [s.claimed for s in steps] == ["3.33", "12"]
    assert calculator_judgment("Each gets <<10/3=3.33>>3.33.\n#### 3.33", "<<10/3=3.33>>\n#### 3.33",
                               "3.33") == CORRECT_JUDGMENT


def test_says_correct() -> None:
    assert says_correct(CORRECT_JUDGMENT)
    assert says_correct("   ")
    assert says_correct(None)
    assert not says_correct("Step 2 is wrong: 48+24 is 72.")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=-1000, max_value=1000))
def test_incorrect_outputs_always_get_a_nonempty_judgment(output: str, gold: int) -> None:
    from nlft.tasks.grading import is_correct

    if is_correct(output, str(gold)):
        return
    judgment = calculator_judgment(output, REFERENCE, str(gold))
    assert judgment.strip()
    assert judgment != CORRECT_JUDGMENT


def test_long_chains_without_equals_are_fast() -> None:
    """A rambling sum of 70 terms with no '=' once made the equation pattern backtrack exponentially."""
    import time

    output = "The car travels " + " + ".join(str(n) for n in range(5, 75)) + " miles"
    start = time.perf_counter()
    assert find_steps(output) == ([], False)
    judgment = calculator_judgment(output, REFERENCE, "72")
    assert time.perf_counter() - start < 1.0
    assert judgment.startswith("The response gives no final answer")


def test_under_flexible_grading_the_judgment_is_about_the_number_not_the_answer_line() -> None:
    """Flexible grading reads the last number: a wrong output is judged on that number, with no word about the
    '#### N' line that only strict grading asks for (X_judge would make the format likely, and unlikelihood would
    then train the content away)."""
    output = "She sold 48/2 = 25 clips in May and 48 + 25 = 73 in all."
    strict = calculator_judgment(output, REFERENCE, "72", "strict")
    flexible = calculator_judgment(output, REFERENCE, "72", "flexible")
    assert "'#### <number>'" in strict
    assert flexible == ("The equation 48/2 = 25 is wrong: 48/2 = 24, not 25. The final answer 73 does not match the "
                        "correct answer 72; the reference computes 48/2 = 24, then 48+24 = 72.")
    assert calculator_judgment("No idea.", REFERENCE, "72", "flexible") == (
        "The response states no final answer; the correct answer is 72; the reference computes 48/2 = 24, then "
        "48+24 = 72.")


def test_equations_with_words_between_the_numbers_are_checked() -> None:
    steps, _ = find_steps("692 girls * 458 = 24000 girls, and 3 apples x 4 = 12 apples")
    assert [(s.expression, s.claimed) for s in steps] == [("692 * 458", "24000"), ("3 x 4", "12")]
    judgment = calculator_judgment("692 girls * 458 = 24000 girls.", "692 * 458 = 316936\n#### 316936", "316936",
                                   "flexible")
    assert judgment.startswith("The equation 692 * 458 = 24000 is wrong: 692 * 458 = 316936, not 24000.")


def test_an_equation_cut_off_at_the_token_limit_is_not_called_wrong() -> None:
    """``5 + 13 = 1`` at the very end of an output that reached its token limit is an unfinished ``18``."""
    output = "First 2 + 3 = 5, then 5 + 13 = 1"
    reference = "2 + 3 = 5\n5 + 13 = 18\n#### 18"
    assert calculator_judgment(output, reference, "18", "flexible").startswith(
        "The equation 5 + 13 = 1 is wrong: 5 + 13 = 18, not 1.")
    assert calculator_judgment(output, reference, "18", "flexible", cut_off=True) == (
        "The response was cut off at the token limit before it reached a final answer; the correct answer is 18; "
        "the reference computes 2 + 3 = 5, then 5 + 13 = 18.")


def test_judgments_have_no_escapes_and_no_double_full_stops() -> None:
    from nlft.tasks.base import tidy
    from nlft.tasks.registry import get_task

    row = get_task("text").make_row("Speed?", "54\xa0Mbit/s", row_id="t1")
    assert get_task("text").rule_judgment("#### 12 Mbit/s", row) == (
        "The response answers '12 Mbit/s', but the correct answer is '54 Mbit/s'.")
    math_row = get_task("math").make_row("Half of 7?", "3.5", row_id="m1")
    assert ".." not in get_task("math").rule_judgment("I do not know.", math_row, "flexible")
    assert tidy("The answer is 5.. Then... fine.") == "The answer is 5. Then... fine."
