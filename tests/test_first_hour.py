"""A newcomer's first hour: mistakes end in one line that says what to do, and nothing is left that blocks the retry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support import write_questions

from nlft.cli import build_parser, main


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_epochs_zero_is_refused(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_file), "--out", str(out), "--epochs", "0"]) == 2
    assert "epochs must be more than 0, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_mistyped_model_is_one_line_and_leaves_nothing(tmp_path, tiny_dir, data_file, capsys, monkeypatch):
    from nlft.utils import models

    monkeypatch.setattr(models, "hub_reachable", lambda host="huggingface.co": False)  # as on a machine offline
    questions = tmp_path / "q.jsonl"
    write_questions(questions, 2)
    out = tmp_path / "p"
    base = ["prepare", "--dataset", str(questions), "--max-new-tokens", "4", "--out", str(out), "--no-progress"]
    assert main([*base, "--model", "smolm2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model 'smolm2' is not a folder" in err[0] and "did you mean 'smollm2'?" in err[0]
    assert not out.exists()  # no args.json that would refuse the corrected rerun
    assert main([*base, "--model", str(tiny_dir)]) == 0
    assert (out / "nlft.jsonl").exists()
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_file), "--out", str(run), "--model", "./no-such-model"]) == 2
    assert "nlft train: error: ./no-such-model, field 'model': model folder not found" in capsys.readouterr().err
    assert not run.exists()


def test_resume_on_a_finished_run_leaves_it_as_it_is(tmp_path, tiny_dir, data_file, capsys):
    run = tmp_path / "run"
    flags = ["train", "--data", str(data_file), "--out", str(run), "--model", str(tiny_dir), "--max-steps", "1",
             "--batch-size", "2", "--no-progress"]
    assert main(flags) == 0
    before = _digest(run)
    capsys.readouterr()
    assert main([*flags, "--resume"]) == 0
    assert "has finished" in capsys.readouterr().err
    assert _digest(run) == before  # manifest, model card, train_runtime: untouched


def test_ctrl_c_exits_130_and_says_where_the_run_resumes(tmp_path, data_file, capsys, monkeypatch):
    import nlft.commands.prepare
    import nlft.commands.train

    def interrupted(args):
        raise KeyboardInterrupt  # what Python raises on SIGINT

    monkeypatch.setattr(nlft.commands.train, "run", interrupted)
    monkeypatch.setattr(nlft.commands.prepare, "run", interrupted)
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert main(["train", "--data", str(data_file), "--out", str(run)]) == 130
    assert (f"nlft train: interrupted; the same command with --resume continues from {run / 'checkpoint-2'}"
            in capsys.readouterr().err)
    assert main(["train", "--data", str(data_file), "--out", str(tmp_path / "new")]) == 130
    assert "no checkpoint was saved yet: the same command with --resume starts it again" in capsys.readouterr().err
    assert main(["prepare", "--out", str(tmp_path / "p")]) == 130
    assert "rerun the same command to resume (the finished rows are kept in" in capsys.readouterr().err


def test_help_keeps_example_blocks_and_lists_every_method():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    train_help = sub.choices["train"].format_help()
    assert "\n    nlft train --method nlft --data data/nlft.jsonl --out runs/nlft\n" in train_help
    assert "\n    nlft train --config configs/cpu-quickstart.yaml --out runs/nlft --resume\n" in train_help
    assert "dft" in parser.format_help() and "sdft" in parser.format_help()
