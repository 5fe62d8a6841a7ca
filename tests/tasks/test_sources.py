"""Question sources: local GSM8K, reasoning-gym generators, JSONL/CSV files, and precise data errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import GSM8K_DIR

from nlft.tasks.sources import load_questions
from nlft.utils.files import DataError

needs_gsm8k = pytest.mark.skipif(not (GSM8K_DIR / "train.jsonl").exists(),
                                 reason=f"GSM8K not found in {GSM8K_DIR} (set NLFT_GSM8K_DIR)")


@needs_gsm8k
def test_gsm8k_from_local_folder() -> None:
    rows = load_questions("gsm8k", data_dir=GSM8K_DIR, split="train", limit=3)
    assert [r["id"] for r in rows] == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]
    first = rows[0]
    assert first["question"].startswith("Natalia sold clips to 48 of her friends")
    assert first["reference"].endswith("#### 72")
    assert "<<48/2=24>>" in first["reference"]
    assert first["gold"] == "72"
    assert rows[1]["gold"] == "10"
    test_rows = load_questions("gsm8k", data_dir=GSM8K_DIR, split="test", limit=1)
    assert test_rows[0]["id"] == "gsm8k-test-0"


def test_gsm8k_missing_split_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train\.jsonl"):
        load_questions("gsm8k", data_dir=tmp_path)


@pytest.mark.parametrize("task", ["gsm_symbolic", "chain_sum", "basic_arithmetic"])
def test_reasoning_gym_is_seeded_and_offline(task: str) -> None:
    a = load_questions(task, limit=5, seed=3)
    b = load_questions(task, limit=5, seed=3)
    c = load_questions(task, limit=5, seed=4)
    test = load_questions(task, split="test", limit=5, seed=3)
    assert a == b
    assert [r["question"] for r in a] != [r["question"] for r in c]
    assert [r["question"] for r in a] != [r["question"] for r in test]
    for row in a:
        assert row["reference"].rstrip().endswith(f"#### {row['gold']}")
        assert row["id"].startswith(f"{task}-train-3-")


def test_chain_sum_reference_holds_the_expression() -> None:
    row = load_questions("chain_sum", limit=1, seed=0)[0]
    expression, _, final = row["reference"].partition("\n")
    # e.g. "4 - 1 - 7 = -4": the expression's value is the gold answer.
    from nlft.data.judging import format_number, safe_eval

    lhs, _, rhs = expression.rpartition(" = ")
    assert format_number(safe_eval(lhs)) == rhs == row["gold"]
    assert final == f"#### {row['gold']}"


def test_jsonl_with_custom_fields(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"id": "a", "problem": "What is 2+2?", "solution": "2+2=4\n#### 4"}) + "\n\n"
        + json.dumps({"problem": "Half of 9?", "solution": 4.5}) + "\n"
        + json.dumps({"problem": "Price?", "solution": "$1,250"}) + "\n"
    )
    rows = load_questions(str(path), question_field="problem", answer_field="solution")
    assert rows == [
        {"id": "a", "question": "What is 2+2?", "reference": "2+2=4\n#### 4", "gold": "4"},
        {"id": "mine-1", "question": "Half of 9?", "reference": "#### 4.5", "gold": "4.5"},
        {"id": "mine-2", "question": "Price?", "reference": "#### 1250", "gold": "1250"},
    ]
    assert len(load_questions(str(path), question_field="problem", answer_field="solution", limit=2)) == 2


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('question,answer\n"What is 3*3?",9\n"Add 1, 2","1+2=<<1+2=3>>3\n#### 3"\n')
    rows = load_questions(str(path))
    assert [r["gold"] for r in rows] == ["9", "3"]
    assert rows[1]["reference"] == "1+2=<<1+2=3>>3\n#### 3"


@pytest.mark.parametrize(
    ("lines", "line", "field", "message"),
    [
        ([{"question": "ok", "answer": "#### 1"}, {"answer": "#### 2"}], 2, "question", "missing"),
        ([{"question": "ok", "answer": "#### 1"}, {"question": "q", "answer": "seven"}], 2, "answer",
         "neither a number"),
        ([{"question": "q", "answer": "so #### soon"}], 1, "answer", "not followed by a number"),
        ([{"question": "q", "answer": ""}], 1, "answer", "empty"),
    ],
)
def test_malformed_rows_name_file_line_field(tmp_path: Path, lines: list[dict], line: int, field: str,
                                             message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DataError, match=message) as info:
        load_questions(str(path))
    assert str(path) in str(info.value)
    assert f"line {line}" in str(info.value)
    assert f"field {field!r}" in str(info.value)


def test_broken_json_and_csv_columns(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n{"question": \n')
    with pytest.raises(DataError, match="line 2"):
        load_questions(str(path))
    csv_path = tmp_path / "cols.csv"
    csv_path.write_text("q,a\nx,1\n")
    with pytest.raises(DataError, match="field 'question'"):
        load_questions(str(csv_path))
    csv_path.write_text("question,answer\nWhat?,1\n,2\n")
    with pytest.raises(DataError, match=r"line 3, field 'question'"):
        load_questions(str(csv_path))


def test_duplicate_ids_and_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": 1, "question": "a", "answer": "1"}\n{"id": 1, "question": "b", "answer": "2"}\n')
    with pytest.raises(DataError, match="duplicate id '1'"):
        load_questions(str(path))
    with pytest.raises(FileNotFoundError, match="neither a known name"):
        load_questions("no-such-dataset")
