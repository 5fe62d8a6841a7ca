"""Answer extraction, normalisation, grading and the ReFT reward (expected values derived by hand)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlft.tasks.grading import extract_answer, gold_answer, is_correct, normalize_number, reft_reward


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("72", "72"),
        ("1,234", "1234"),
        ("$1,000,000", "1000000"),
        ("18.0", "18"),
        ("18.50", "18.5"),
        ("3/4", "0.75"),
        ("-7", "-7"),
        ("-$5.00", "-5"),
        ("0.2", "0.2"),
        (".5", "0.5"),
        ("42.", "42"),
        ("1/3", "0.333333"),
        ("abc", None),
        ("", None),
        ("5/0", None),
    ],
)
def test_normalize_number(raw: str, expected: str | None) -> None:
    assert normalize_number(raw) == expected


def test_strict_reads_number_after_last_hashes() -> None:
    text = "Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n#### 72"
    assert extract_answer(text, "strict") == "72"
    assert extract_answer("first #### 5 then corrected\n#### 1,200", "strict") == "1200"
    assert extract_answer("#### $18.00", "strict") == "18"


def test_strict_needs_hashes_flexible_takes_last_number() -> None:
    text = "She earns 0.2 x 50 = 10 dollars, so the answer is 10 dollars for 50 minutes"
    assert extract_answer(text, "strict") is None
    assert extract_answer(text, "flexible") == "50"
    assert extract_answer("The answer is 3/4 of a cup.", "flexible") == "0.75"
    assert extract_answer("no number here", "flexible") is None
    assert extract_answer("", "flexible") is None


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="strict"):
        extract_answer("#### 1", "loose")  # type: ignore[arg-type]


def test_gold_answer() -> None:
    assert gold_answer("Step one <<2+2=4>>4.\n#### 4,000") == "4000"
    with pytest.raises(ValueError, match="####"):
        gold_answer("no final answer")


def test_is_correct_strict_and_flexible() -> None:
    assert is_correct("... so 70 + 2 = 72\n#### 72", "72")
    assert is_correct("#### 72.00", "72")
    assert is_correct("#### 0.75", "3/4")
    assert not is_correct("#### 70", "72")
    # Without '####' strict grading never accepts; flexible reads the last number.
    assert not is_correct("The answer is 72", "72", "strict")
    assert is_correct("The answer is 72", "72", "flexible")
    assert not is_correct(None, "72")


def test_reft_reward() -> None:
    """1 correct, 0.1 extractable but wrong, 0 when no answer can be read."""
    assert reft_reward("#### 72", "72") == 1.0
    assert reft_reward("#### 71", "72") == 0.1
    assert reft_reward("I do not know", "72") == 0.0
    assert reft_reward("The answer is 72", "72", "flexible") == 1.0


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_comma_grouped_integers_round_trip(n: int) -> None:
    assert normalize_number(f"{n:,}") == str(n)
    assert extract_answer(f"reasoning\n#### {n:,}") == str(n)
    assert is_correct(f"#### {n:,}.0", str(n))


@pytest.mark.parametrize(("text", "expected"), [
    ("The numbers are:\n- 12\n- 51", "51"),             # a list's bullet, not a minus sign
    ("Total:\n  - 51 apples", "51"),
    ("The loss is -51 dollars.", "-51"),                 # a sign written against its number stays one
    ("1. She has 3 bags.\n2. Each holds 4, so 3 * 4 = 12.\n3. So she has", "12"),  # step numbers are no answers
    ("5. Add 2 + 4 = 7\n6. The total is therefore", "7"),
    ("1) 7 + 5 = 12\n2) Half of it:", "12"),
    ("The answer is\n6.", "6"),                          # a number alone on its line is the answer
    ("#### 42\nThat took 3 steps and 7 minutes.", "42"),  # the '####' line first, when there is one
    ("Step 1 gives 5.\n#### 9", "9"),
])
def test_flexible_skips_list_markers_and_reads_the_answer_line_first(text: str, expected: str) -> None:
    assert extract_answer(text, "flexible") == expected


def test_strict_still_reads_signed_and_dollar_answers() -> None:
    assert extract_answer("#### -5", "strict") == "-5"
    assert extract_answer("#### -$5.50", "strict") == "-5.5"
    assert extract_answer("#### $ 18", "strict") == "18"
