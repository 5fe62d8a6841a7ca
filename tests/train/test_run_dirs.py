"""Run and data directories: one writer at a time (a lock, two real processes), paths that travel,
no folder left by a run that failed its checks, and errors in the user's words."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import env, nlft_cmd, sample_records

from nlft.cli import main
from nlft.utils.files import LOCK_FILE, DataError, lock_dir, unlock_dir

HOLD = ("import sys; from nlft.utils.files import lock_dir; lock_dir(sys.argv[1]); print('locked', flush=True); "
        "sys.stdin.read()")


def _holder(folder) -> subprocess.Popen:
    """A second real process that holds ``folder``'s lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env())
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow
def test_a_second_process_writing_into_the_same_folder_is_refused(tmp_path, tiny_dir, data_file):
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        # a real `nlft train` into the held run directory stops before it writes anything
        proc = subprocess.run(nlft_cmd("train", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(run),
                                       "--max-steps", "1"), env=env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"nlft train: error: {run}: another nlft process (pid {holder.pid}) is writing into this folder; wait for "
            "it to finish or choose another one"]
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]
        # in this process too, while the holder lives
        with pytest.raises(DataError, match=f"pid {holder.pid}"):
            lock_dir(run)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the lock ends with its process, however it ends: the same command now runs
    proc = subprocess.run(nlft_cmd("train", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(run),
                                   "--max-steps", "1", "--batch-size", "2"), env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "adapter" / "adapter_config.json").exists()


@pytest.mark.slow
def test_data_directories_are_locked_too(tmp_path):
    out = tmp_path / "data"
    holder = _holder(out)
    try:
        proc = subprocess.run(nlft_cmd("generate", "--dataset", "chain_sum", "--limit", "2", "--out", str(out)),
                              env=env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "another nlft process" in proc.stderr and "Traceback" not in proc.stderr
        assert not (out / "args.json").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_lock_is_reentrant_in_one_process(tmp_path):
    folder = tmp_path / "x"
    assert lock_dir(folder) == folder and lock_dir(folder) == folder
    assert (folder / LOCK_FILE).read_text().strip().isdigit()
    unlock_dir(folder)


def test_eval_run_from_another_folder_writes_run_eval(tmp_path, tiny_dir, data_file, monkeypatch, capsys):
    """Train with a relative --out, move away, evaluate the run by its path: --out defaults to RUN/eval."""
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["train", "--model", str(tiny_dir), "--data", str(data_file), "--out", "runs/nlft", "--max-steps", "1",
                 "--batch-size", "2"]) == 0
    run = tmp_path / "here" / "runs" / "nlft"
    assert json.loads((run / "manifest.json").read_text())["final"]["adapter"] == "adapter"
    monkeypatch.chdir(tmp_path / "elsewhere")
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": r["question"], "answer": r["reference"]}) + "\n"
                                 for r in sample_records()))
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--dataset", str(questions), "--limit", "2", "--max-new-tokens", "4",
                 "--no-progress", "--allow-trained"]) == 0  # the questions it trained on, as told
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["adapter"] == str(run / "adapter")
    assert f"-> {run / 'eval'}" in capsys.readouterr().out
    assert "| accuracy_strict |" in (run / "adapter" / "README.md").read_text()  # the model card has the accuracy
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_failed_checks_leave_no_folder(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    for argv in (["train", "--data", str(missing), "--out", str(tmp_path / "t")],
                 ["judge", "--input", str(missing), "--out", str(tmp_path / "j")],
                 ["prepare", "--dataset", str(missing), "--out", str(tmp_path / "p")],
                 ["generate", "--dataset", str(missing), "--out", str(tmp_path / "g")],
                 ["eval", "--dataset", str(missing), "--out", str(tmp_path / "e")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("not found" in err or "nor an existing file" in err), (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_missing_file_is_reported_before_any_model_loads(tmp_path, capsys):
    # a model that does not exist anywhere: the data file is checked first
    assert main(["train", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "none.jsonl: training data file not found" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--adapter", str(tmp_path / "no-adapter"),
                 "--data", "chain_sum", "--out", str(tmp_path / "e")]) == 2
    assert "no-adapter: adapter folder not found (--adapter)" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--method", "dpo"], "nlft train: error: argument --method: invalid choice: 'dpo'"),
    (["eval", "--limit", "0"], "nlft eval: error: --limit must be at least 1, got 0 (see nlft eval -h)"),
    (["eval", "--limit", "-3"], "nlft eval: error: --limit must be at least 1, got -3"),
    (["prepare", "--limit", "0"], "nlft prepare: error: --limit must be at least 1, got 0"),
    (["saliency", "--data", "x", "--limit", "0"], "nlft saliency: error: --limit must be at least 1, got 0"),
    (["eval"], "nlft eval: error: no output folder: give --out DIR (or --run RUN, which writes into RUN/eval)"),
])
def test_errors_are_one_line_with_the_flag_name(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "usage:" not in err, err
    assert list(tmp_path.iterdir()) == []
