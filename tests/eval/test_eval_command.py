"""`nlft eval`: the paired change against the base model, its help and what it prints."""

from __future__ import annotations

import json

from support import sample_records

from nlft.cli import build_parser, main
from nlft.eval.against_base import format_vs_base, vs_base
from nlft.tasks.base import PROMPT_NAMES


def _predictions(folder, correct, settings):
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "correct": False, "correct_flexible": ok}) + "\n" for i, ok in enumerate(correct)))
    (folder / "eval_settings.json").write_text(json.dumps(settings))


def test_vs_base_pairs_the_same_questions_made_with_the_same_settings(tmp_path):
    """Base right on q0 only, tuned right on q1, q2, q3: 3 gained, 1 lost, exact p = 2 * (1 + 4) / 16 = 0.625."""
    settings = {"max_new_tokens": 8, "template": "{question}"}
    _predictions(tmp_path / "eval", [False, True, True, True], settings)
    _predictions(tmp_path / "base-eval", [True, False, False, False, True], settings)  # a fifth question too
    change, note = vs_base({"settings": settings}, str(tmp_path / "eval"), None)
    assert note is None and change["folder"] == str(tmp_path / "base-eval")
    assert {k: change["flexible"][k] for k in ("n", "before", "after", "gained", "lost", "p_value")} == {
        "n": 4, "before": 0.25, "after": 0.75, "gained": 3, "lost": 1, "p_value": 0.625}
    assert format_vs_base(change) == (
        f"against the base model ({tmp_path / 'base-eval'}, n=4): flexible 25.0% -> 75.0% (+50.0 points: 3 gained, "
        "1 lost, exact paired p=0.62); strict 0.0% -> 0.0% (+0.0 points: 0 gained, 0 lost, exact paired p=1)")
    change, note = vs_base({"settings": {**settings, "max_new_tokens": 9}}, str(tmp_path / "eval"), None)
    assert change is None and "base-eval was made with other settings (max_new_tokens differ)" in note
    assert note.endswith("--vs-base evaluates the base model too")


def test_eval_help_lists_every_prompt_name():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["eval"]
    text = " ".join(sub.format_help().split())
    assert ", ".join(PROMPT_NAMES) in text and "--vs-base" in text


def test_eval_run_vs_base_prints_the_paired_change_and_no_raw_dict(tmp_path, tiny_dir, data_file, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(run), "--max-steps", "1",
                 "--batch-size", "2", "--no-progress"]) == 0
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": r["question"], "answer": r["reference"]})
                                 + "\n" for i, r in enumerate(sample_records())))
    flags = ["--dataset", str(questions), "--allow-trained", "--limit", "3", "--max-new-tokens", "4",
             "--batch-size", "3", "--no-progress"]  # the questions the run trained on, as told
    capsys.readouterr()
    assert main(["eval", "--run", str(run), *flags, "--vs-base"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not any(line.lstrip().startswith("{") for line in out)
    assert out[0].startswith("accuracy strict ")
    assert out[1].startswith(f"against the base model ({run / 'base-eval'}, n=3)")
    assert len((run / "base-eval" / "predictions.jsonl").read_text().splitlines()) == 3
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["vs_base"]["flexible"]["n"] == 3 and metrics["vs_base"]["folder"] == str(run / "base-eval")
    # another evaluation with the same settings finds the base predictions; other settings are said
    assert main(["eval", "--run", str(run), *flags, "--out", str(run / "again")]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("against the base model")
    assert main(["eval", "--run", str(run), *flags[:-3], "--batch-size", "3", "--max-new-tokens", "5",
                 "--no-progress", "--out", str(run / "longer")]) == 0
    assert "not measured" in capsys.readouterr().out
