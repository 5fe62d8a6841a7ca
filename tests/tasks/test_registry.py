"""The registry (get_task, task_of, prompts by name), files that name their task, and `nlft tasks`."""

from __future__ import annotations

import json

import pytest

from nlft.cli import main
from nlft.tasks.prompts import BASE_TEMPLATE, BRIEF_TEMPLATE, JUDGE_INSTRUCTION, SOLVE_TEMPLATE
from nlft.tasks.registry import common_task, dataset_task, get_task, resolve_prompt, task_of
from nlft.tasks.sources import file_row, load_questions
from nlft.utils.files import DataError


def test_number_task_keeps_the_papers_prompts_and_judge():
    task = get_task("number")
    assert task is get_task(None) is task_of({"gold": "3"})
    assert task.template(None) == task.template("solve") == SOLVE_TEMPLATE
    assert (task.template("base"), task.template("brief")) == (BASE_TEMPLATE, BRIEF_TEMPLATE)
    assert task.judge_instruction == JUDGE_INSTRUCTION
    assert task.is_correct("12 + 30 = 42\n#### 42", {"gold": "42"})
    assert task.rule_judgment("6 * 7 = 41\n#### 41", {"gold": "42", "reference": "6 * 7 = 42\n#### 42"}).startswith(
        "The equation 6 * 7 = 41 is wrong")


@pytest.mark.parametrize("spec", ["math", "choice", "text", "rg:word_sorting"])
def test_other_tasks_have_neutral_prompts(spec):
    task = get_task(spec)
    for prompt in (task.template(None), task.template("brief"), task.judge_instruction):
        assert "{question}" in prompt
    if spec != "math":
        assert "math" not in (task.template(None) + task.template("brief") + task.judge_instruction).lower()
    assert task.template("solve") == task.template("base") == task.solve_template != task.template("brief")
    assert "{output}" in task.judge_instruction and "{reference}" in task.judge_instruction
    assert task.judge_instruction.count("### The response is correct. ###") == 1


def test_unknown_specs_and_prompts(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'maths'"):
        get_task("maths")
    with pytest.raises(ValueError, match="--prompt must be one of solve, base, brief"):
        resolve_prompt("nope", get_task("choice"))
    template = tmp_path / "p.txt"
    template.write_text("Q: {question}\n####")
    assert resolve_prompt(str(template), get_task("choice")) == "Q: {question}\n####"
    with pytest.raises(ValueError, match="unknown answer type"):
        load_questions("x.jsonl", answer_type="cobol")
    with pytest.raises(ValueError, match="mix tasks"):
        common_task([{"task": "math"}, {}])


def test_humaneval_is_registered_lazily():
    try:
        import nlft.tasks.code  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="humaneval task is not available"):
            get_task("humaneval")
    else:
        task = get_task("humaneval")
        assert task.name == "humaneval" and task.stops_at_answer is False
    assert dataset_task("humaneval").name == "humaneval" if _has_code() else True


def _has_code() -> bool:
    from importlib.util import find_spec

    return find_spec("nlft.tasks.code") is not None


def test_rows_that_name_their_task_load_back(tmp_path):
    rows = [*load_questions("rg:spell_backward", limit=2),
            get_task("choice").make_row("q?", "A", row_id="c", raw={"choices": ["x", "y"]})]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(file_row(r)) + "\n" for r in rows))
    assert load_questions(str(path)) == rows  # --answer-type is not needed: the rows say it
    numeric = load_questions("chain_sum", limit=1)[0]
    assert file_row(numeric) == {"id": numeric["id"], "question": numeric["question"], "answer": numeric["reference"]}
    path.write_text(json.dumps({"task": "choice", "question": "q", "reference": "r"}) + "\n")
    with pytest.raises(DataError, match="line 1, field 'gold'"):
        load_questions(str(path))
    path.write_text(json.dumps({"task": "chess", "question": "q", "reference": "r", "gold": "x"}) + "\n")
    with pytest.raises(DataError, match="line 1, field 'task': unknown task 'chess'"):
        load_questions(str(path))


def test_nlft_tasks_lists_every_task_and_the_gym_names(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for spec in ("number", "math", "choice", "text", "rg:NAME[:key=value,...]", "humaneval"):
        assert any(line.startswith(spec + " ") for line in lines), spec
    assert "--answer-type number|math|choice[:index=0|1]|text[:match=contains," in out
    assert "spell_backward" in out and "word_sorting" in out
    assert main(["tasks", "--no-gym"]) == 0
    assert "spell_backward" not in capsys.readouterr().out


def test_number_runs_store_the_arguments_they_always_have():
    """args.json of a numeric prepare is what it was before tasks (a rerun into an older folder resumes)."""
    from nlft.cli import build_parser
    from nlft.commands._data_args import judge_spec, result_arguments

    args = build_parser().parse_args(["prepare", "--dataset", "chain_sum", "--out", "x"])
    judge_spec(args, load_questions("chain_sum", limit=1))
    assert result_arguments(args) == {
        "dataset": "chain_sum", "data_dir": None, "split": "train", "limit": None, "question_field": "question",
        "answer_field": "answer", "backend": "hf", "model": "smollm2", "adapter": None, "no_chat_template": False,
        "base_url": None, "model_name": None, "api_key_env": "OPENAI_API_KEY", "template": None, "num_samples": 1,
        "max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "seed": 0, "batch_size": 8, "judge": "calculator",
        "judge_model": None, "judge_max_new_tokens": 256, "grading": "flexible", "judge_base_url": None,
        "judge_model_name": None, "verbose": False}
    args = build_parser().parse_args(["prepare", "--dataset", "rg:spell_backward", "--out", "x"])
    judge_spec(args, load_questions("rg:spell_backward", limit=1))
    assert args.judge == "rule"
