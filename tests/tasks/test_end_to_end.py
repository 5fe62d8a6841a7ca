"""Every task family end to end on a tiny random model: prepare -> train (NLFT) -> eval, through the commands.

A random model answers nothing right, so a scripted OpenAI-compatible server also plays a model whose
answers are right for one question and wrong for the other: grading, the rule judge and the LLM
judge's instruction are each the task's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import ScriptedServer, ok_reply

from nlft.cli import main
from nlft.tasks.registry import get_task


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _files(tmp: Path) -> dict[str, tuple[list[str], str, str]]:
    """family -> (dataset flags, a right output for question 0, the task's spec)."""
    choice = _write(tmp / "mc.jsonl", [
        {"id": "c0", "question": "Capital of France?", "choices": ["London", "Paris"], "answer": "B"},
        {"id": "c1", "question": "Capital of Italy?", "choices": ["Rome", "Oslo"], "answer": 0},
        {"id": "c2", "question": "Capital of Peru?", "choices": {"A": "Quito", "B": "Lima"}, "answer": "Lima"},
        {"id": "c3", "question": "Capital of Chad?", "choices": ["N'Djamena", "Abuja"], "answer": "a"}])
    math = _write(tmp / "math.jsonl", [
        {"id": "m0", "question": "Half of 3/2?", "answer": "\\frac{3}{4}"},
        {"id": "m1", "question": "sqrt(8)?", "answer": "2\\sqrt{2}"},
        {"id": "m2", "question": "x if 2x=1?", "answer": "1/2"},
        {"id": "m3", "question": "Solve x^2<1.", "answer": "(-1, 1)"}])
    text = _write(tmp / "text.jsonl", [
        {"id": "t0", "question": "Capital of Peru?", "answer": "Lima"},
        {"id": "t1", "question": "Tallest mountain?", "answer": ["Mount Everest", "Everest"]},
        {"id": "t2", "question": "Red planet?", "answer": "Mars"},
        {"id": "t3", "question": "Opposite of hot?", "answer": "cold"}])
    return {"choice": (["--dataset", str(choice), "--answer-type", "choice"], "Paris it is.\n#### B", "choice"),
            "math": (["--dataset", str(math), "--answer-type", "math"], "3/2 / 2 = 0.75\n#### 0.75", "math"),
            "text": (["--dataset", str(text), "--answer-type", "text"], "#### lima", "text"),
            "rg": (["--dataset", "rg:spell_backward"], "", "rg:spell_backward"),
            "humaneval": (["--dataset", "humaneval", "--split", "test"], "", "humaneval")}


@pytest.mark.parametrize("family", ["choice", "math", "text", "rg", "humaneval"])
def test_prepare_train_eval(family, tmp_path, tiny_dir, capsys):
    flags, _, spec = _files(tmp_path)[family]
    task = get_task(spec)
    data = tmp_path / "data"
    prompt = ["--prompt", "brief"] if family == "rg" else []  # a built-in prompt by name
    assert main(["prepare", *flags, *prompt, "--model", str(tiny_dir), "--limit", "4", "--max-new-tokens", "8",
                 "--batch-size", "4", "--temperature", "1", "--out", str(data), "--no-progress"]) == 0
    records = [json.loads(line) for line in (data / "nlft.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["task"] == spec and "meta" in r for r in records)
    # the task's own prompt, or the one named
    want = task.template("brief") if prompt else task.solve_template
    assert records[0]["provenance"]["template"]["text"] == want
    assert records[0]["provenance"]["judge"]["kind"] == "rule"
    assert records[0]["provenance"]["judge"]["grading"] == "flexible"  # the default: it reads what models write
    for r in records:
        assert r["correct"] == task.is_correct(r["output"], r, "flexible")
        assert r["correct"] or r["judgment"] == task.rule_judgment(r["output"], r, "flexible")
    assert json.loads((data / "args.json").read_text())["judge"] == "rule"

    run = tmp_path / "run"
    epoch_eval = (["--eval-data", flags[1], "--eval-split", "validation"] if family == "rg"
                  else ["--eval-data", "humaneval", "--eval-split", "test"] if family == "humaneval"
                  else ["--eval-data", flags[1], "--eval-answer-type", flags[3]])
    assert main(["train", "--method", "nlft", "--data", str(data / "nlft.jsonl"), "--model", str(tiny_dir),
                 "--out", str(run), "--epochs", "1", "--batch-size", "4", "--no-progress", "--eval-each-epoch",
                 *epoch_eval, "--eval-limit", "2", "--eval-max-new-tokens", "4"]) == 0
    (epoch,) = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert epoch["n"] == 2
    (epoch_dir,) = (run / "eval").iterdir()
    assert json.loads((epoch_dir / "metrics.json").read_text())["settings"]["task"] == spec
    eval_flags = [*flags[:2], "--split", "train"] if family == "rg" else flags  # files have one split
    # the questions it trained on: refused unless told (tests/tasks/test_file_end_to_end.py evaluates held-out ones)
    assert main(["eval", "--run", str(run), *eval_flags, "--limit", "4", "--max-new-tokens", "8", "--batch-size",
                 "4", "--no-progress", "--allow-trained"]) == 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["settings"]["task"] == spec
    predictions = [json.loads(line) for line in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert all(p["task"] == spec for p in predictions)
    capsys.readouterr()


def test_reft_trains_on_a_choice_task(tmp_path, tiny_dir, capsys):
    """ReFT's reward comes from the records' task: one SFT warm-up step and one GRPO step on choice records."""
    flags, _, _ = _files(tmp_path)["choice"]
    data = tmp_path / "data"
    assert main(["prepare", *flags, "--model", str(tiny_dir), "--limit", "4", "--max-new-tokens", "8",
                 "--batch-size", "4", "--temperature", "1", "--out", str(data), "--no-progress"]) == 0
    run = tmp_path / "reft"
    assert main(["train", "--method", "reft", "--data", str(data / "nlft.jsonl"), "--model", str(tiny_dir),
                 "--out", str(run), "--max-steps", "1", "--batch-size", "2", "--reft-num-generations", "2",
                 "--reft-max-new-tokens", "4", "--no-progress"]) == 0, capsys.readouterr().err[-2000:]
    assert (run / "adapter" / "adapter_config.json").exists()


@pytest.mark.parametrize("family", ["choice", "math", "text"])
def test_right_and_wrong_answers_from_a_server_and_the_llm_judge(family, tmp_path, capsys):
    flags, right, spec = _files(tmp_path)[family]
    task = get_task(spec)
    judge_says = "The response picks the wrong thing: it should reconsider."
    with ScriptedServer([ok_reply(right), ok_reply("I am not sure.\n#### zzz")]) as gen:
        assert main(["generate", *flags, "--limit", "2", "--backend", "openai", "--base-url", gen.url,
                     "--model-name", "m", "--max-concurrency", "1", "--out", str(tmp_path / "g"),
                     "--no-progress"]) == 0
    prompts = [r["payload"]["messages"][-1]["content"] for r in gen.requests]
    assert all(p.startswith(task.solve_template.split("{question}")[0]) for p in prompts)
    with ScriptedServer([ok_reply(judge_says)]) as judge:
        assert main(["judge", "--input", str(tmp_path / "g" / "outputs.jsonl"), "--judge", "openai",
                     "--base-url", judge.url, "--model-name", "j", "--out", str(tmp_path / "j"),
                     "--no-progress"]) == 0
    records = [json.loads(line) for line in (tmp_path / "j" / "nlft.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in records] == [True, False]
    assert records[1]["judgment"] == judge_says and records[1]["extracted"] in (None, "zzz")
    (asked,) = [r["payload"]["messages"][-1]["content"] for r in judge.requests]
    assert asked.startswith(task.judge_instruction.split("{question}")[0])
    # --judge rule writes the task's own judgment; --judge calculator is for numbers only
    assert main(["judge", "--input", str(tmp_path / "g" / "outputs.jsonl"), "--judge", "rule",
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    ruled = [json.loads(line) for line in (tmp_path / "r" / "nlft.jsonl").read_text().splitlines()]
    assert ruled[1]["judgment"] == task.rule_judgment(ruled[1]["output"], ruled[1], "flexible")
    assert main(["judge", "--input", str(tmp_path / "g" / "outputs.jsonl"), "--judge", "calculator",
                 "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    assert "--judge calculator checks arithmetic" in capsys.readouterr().err


@pytest.mark.slow  # the real SmolLM2-135M on eight questions (about 15 s)
def test_smollm2_answers_a_reasoning_gym_task_readably(smollm2_path, tmp_path):
    """With the brief prompt SmolLM2 answers isomorphic_strings in a word that flexible grading reads ("True")."""
    from nlft.eval.accuracy import evaluate_model
    from nlft.tasks.sources import load_questions

    rows = load_questions("rg:isomorphic_strings", split="test", limit=8)
    metrics = evaluate_model(smollm2_path, rows, out_dir=tmp_path / "e", max_new_tokens=32, batch_size=8,
                             template=get_task("rg:isomorphic_strings").template("brief"), progress=False)
    predictions = [json.loads(line) for line in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    assert metrics["n"] == 8 and metrics["settings"]["task"] == "rg:isomorphic_strings"
    assert sum(p["extracted_flexible"] in ("True", "False") for p in predictions) >= 4
    assert metrics["accuracy_flexible"] == sum(p["extracted_flexible"] == p["gold"] for p in predictions) / 8
