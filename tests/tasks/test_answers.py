"""The answer readers shared by the tasks other than numbers: strict reads '####', flexible the usual phrasings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlft.tasks.answers import boxed, candidates, clean, first_answer, hash_answer


@pytest.mark.parametrize(("raw", "want"), [
    ("**Paris**", "Paris"), ('"nus".', "nus"), ("  `x^2` ", "x^2"), ("$\\frac{3}{4}$", "\\frac{3}{4}"),
    ("Paris.", "Paris"), ("3.", "3."), ("wait...", "wait..."), ("'ok'", "ok"), ("", None), ("**", None),
])
def test_clean_strips_decoration_only(raw, want):
    assert clean(raw) == want


def test_hash_answer_reads_the_last_answer_line():
    assert hash_answer("Reasoning.\n#### first\nMore.\n#### second\n") == "second"
    assert hash_answer("So ####   **B**  ") == "B"
    assert hash_answer("#### \n") is None
    assert hash_answer("no answer line") is None
    assert hash_answer(None) is None


def test_boxed_reads_nested_braces_and_the_last_box():
    assert boxed("first \\boxed{1} then \\boxed{\\frac{3}{4}}.") == "\\frac{3}{4}"
    assert boxed("\\boxed{}") is None
    assert boxed("\\boxed{unclosed") is None


@pytest.mark.parametrize(("output", "want"), [
    ("Let me see.\n#### Lyon", "Lyon"),
    ("The final answer is \\boxed{Lyon}.", "Lyon"),
    ("<answer>Lyon</answer>", "Lyon"),
    ("I think about it. The answer is Lyon.", "Lyon"),
    ("Reasoning...\nFinal answer: Lyon", "Lyon"),
    ("Reasoning...\nLyon", "Lyon"),
])
def test_flexible_reads_common_phrasings_strict_only_hashes(output, want):
    assert first_answer(output, "flexible") == want
    assert first_answer(output, "strict") == (want if "####" in output else None)


def test_candidates_order_and_bad_mode():
    assert list(candidates("The answer is x.\n#### y", "flexible"))[:2] == ["y", "x"]
    with pytest.raises(ValueError, match="strict"):
        list(candidates("x", "loose"))  # type: ignore[arg-type]


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)
_lead = st.sampled_from(["", "Let me think step by step.\n", "First, 2 words.\n\n"])


@given(_word, _lead, st.sampled_from(["#### {}", "#### **{}**", "The answer is {}.", "Final answer: {}",
                                      "\\boxed{{{}}}", "<answer>{}</answer>", "the answer is \"{}\"", "{}"]))
def test_flexible_reads_a_word_in_any_phrasing(word, lead, phrasing):
    output = lead + phrasing.format(word)
    assert first_answer(output, "flexible") == word
    assert first_answer(output, "strict") == (word if phrasing.startswith("####") else None)
