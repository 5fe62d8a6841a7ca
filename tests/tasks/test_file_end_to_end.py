"""Files as published, end to end on a tiny random model: prepare -> train (NLFT) -> eval of the held-out questions.

A chat file (``messages`` JSONL) and an MBPP file (asserts in ``test_list``) are prepared as they are, trained on,
and evaluated by ``nlft eval --run`` alone, which finds the run's own held-out questions and answer type, and
refuses the questions the run trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_layouts import CHAT, MBPP

from nlft.cli import main

MORE_MBPP = [
    {"text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b", "task_id": 10,
     "test_setup_code": "", "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
     "challenge_test_list": []},
    {"text": "Write a function to square a number.", "code": "def square(x):\n    return x * x", "task_id": 11,
     "test_setup_code": "", "test_list": ["assert square(3) == 9"], "challenge_test_list": []},
]
MORE_CHAT = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                           {"role": "assistant", "content": f"{i} + {i} = {2 * i}. The answer is {2 * i}."}]}
             for i in range(2, 8)]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prepare_train(tmp: Path, tiny: Path, flags: list[str]) -> Path:
    data, run = tmp / "data", tmp / "run"
    assert main(["prepare", *flags, "--model", str(tiny), "--max-new-tokens", "8", "--batch-size", "4",
                 "--temperature", "1", "--out", str(data), "--no-progress"]) == 0
    assert main(["train", "--method", "nlft", "--data", str(data / "nlft.jsonl"), "--model", str(tiny),
                 "--out", str(run), "--epochs", "1", "--batch-size", "2", "--no-progress"]) == 0
    return run


def _eval(run: Path, *flags: str, out: Path | None = None) -> int:
    return main(["eval", "--run", str(run), *flags, "--max-new-tokens", "8", "--batch-size", "4", "--no-progress",
                 "--out", str(out or run / "eval")])


@pytest.mark.parametrize("family", ["chat", "mbpp"])
def test_prepare_train_eval_from_a_published_file(family, tmp_path, tiny_dir, capsys):
    if family == "chat":
        path = _jsonl(tmp_path / "chat.jsonl", CHAT + MORE_CHAT)  # 8 rows: 4 train, 4 held out
        flags = ["--dataset", str(path), "--split-fractions", "0.5,0,0.5", "--split", "train"]
        trained_flags, spec = flags, None
    else:
        path = _jsonl(tmp_path / "mbpp.jsonl", MBPP + MORE_MBPP)  # 4 rows: the first 2 trained on
        flags = ["--dataset", str(path), "--answer-type", "code", "--limit", "2"]
        trained_flags, spec = ["--dataset", str(path), "--limit", "2"], "humaneval"
    run = _prepare_train(tmp_path, tiny_dir, flags)
    records = [json.loads(x) for x in (tmp_path / "data" / "nlft.jsonl").read_text().splitlines()]
    assert len(records) == (4 if family == "chat" else 2) and all(r.get("task") == spec for r in records)
    trained = {r["question"] for r in records}
    if family == "chat":  # the ids of each part are recorded
        split = json.loads((tmp_path / "data" / "split.json").read_text())
        assert split["read"] == "train" and sorted(split["ids"]["train"]) == sorted(r["question_id"] for r in records)
        assert len(split["ids"]["test"]) == 4 and split["fractions"] == [0.5, 0.0, 0.5]
    capsys.readouterr()

    assert _eval(run) == 0  # no --dataset, no --answer-type: the run's held-out questions, as the run read them
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert "evaluating the run's held-out questions" in capsys.readouterr().err
    predictions = [json.loads(x) for x in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert metrics["n"] == (4 if family == "chat" else 2) and not {p["question"] for p in predictions} & trained
    assert all(p.get("task") == spec for p in predictions)
    if family == "mbpp":
        assert [p["id"] for p in predictions] == ["10", "11"]

    # the questions it trained on are refused, unless told (the answer type is still the run's)
    assert _eval(run, *trained_flags, out=tmp_path / "e2") == 2
    assert "were trained on" in capsys.readouterr().err
    assert _eval(run, *trained_flags, "--allow-trained", out=tmp_path / "e3") == 0
    assert json.loads((tmp_path / "e3" / "metrics.json").read_text())["n"] == len(records)
