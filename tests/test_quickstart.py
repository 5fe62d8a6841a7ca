"""`nlft quickstart` end to end: prepare -> train -> evaluate -> saliency map -> plots, and resume."""

from __future__ import annotations

import json
import re

import pytest

from nlft.cli import main
from nlft.commands.quickstart import saliency_sample, verdict


def _check_results(out, n_train: int, n_eval: int, epochs: float, saliency_limit: int = 16) -> None:
    records = [json.loads(line) for line in (out / "data" / "nlft.jsonl").read_text().splitlines()]
    assert len(records) == n_train
    if (out / "data" / "nlft-train.jsonl").exists():  # empty outputs left out of training
        records = [json.loads(line) for line in (out / "data" / "nlft-train.jsonl").read_text().splitlines()]
        assert 0 < len(records) < n_train and all(r["output"].strip() for r in records)
    assert all(r["correct"] or r["judgment"] for r in records)
    run = out / "run"
    assert (run / "adapter" / "adapter_config.json").exists()
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 16
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == n_eval and 0.0 <= metrics["accuracy_strict"] <= 1.0
    assert json.loads((out / "base-eval" / "metrics.json").read_text())["n"] == n_eval
    history = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0.0, epochs]
    assert history[1]["accuracy_strict"] == metrics["accuracy_strict"]
    page = (out / "saliency.html").read_text()
    data = json.loads(re.search(r'id="nlft-data">(.*?)</script>', page, re.S).group(1))
    assert [e["id"] for e in data["examples"]] == [r["id"] for r in saliency_sample(records, saliency_limit)]
    assert sorted(p.name for p in run.glob("plot_*.png")) == ["plot_accuracy.png", "plot_loss.png",
                                                               "plot_token_classes.png"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["method"] == "nlft" and manifest["epochs"]


def test_quickstart_runs_every_step_and_resumes(tiny_dir, tmp_path, capsys):
    model_dir = tiny_dir
    out = tmp_path / "qs"
    argv = ["quickstart", "--model", str(model_dir), "--dataset", "chain_sum", "--out", str(out), "--train-size", "4",
            "--eval-size", "2", "--epochs", "1", "--max-new-tokens", "8", "--batch-size", "4", "--temperature", "1",
            "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    _check_results(out, n_train=4, n_eval=2, epochs=1.0)
    for step in range(1, 6):
        assert f"[{step}/5]" in captured.err
    assert f"saliency map:        {out / 'saliency.html'}" in captured.out
    assert f"adapter:             {out / 'run' / 'adapter'}" in captured.out

    # A rerun resumes: nothing is generated or trained again.
    data_before = (out / "data" / "nlft.jsonl").read_text()
    adapter_before = (out / "run" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert "already trained" in capsys.readouterr().err
    assert (out / "data" / "nlft.jsonl").read_text() == data_before
    assert (out / "run" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == adapter_before
    assert len((out / "run" / "eval_history.jsonl").read_text().splitlines()) == 2
    # Different settings in the same folder are refused, naming what changed.
    assert main([*argv[:-1], "--epochs", "2", "--no-progress"]) == 2
    assert "epochs: 1.0 -> 2.0" in capsys.readouterr().err


def test_quickstart_rejects_bad_flags(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "a"), "--train-size", "0"]) == 2
    assert "--train-size must be at least 1" in capsys.readouterr().err
    assert main(["quickstart", "--out", str(tmp_path / "b"), "--dataset", "gsm8k"]) == 2
    assert "give --data-dir" in capsys.readouterr().err


def test_saliency_sample_mixes_correct_and_incorrect_records():
    records = [{"id": i, "correct": i % 5 == 0} for i in range(20)]  # 4 correct, 16 incorrect
    picked = saliency_sample(records, 8)
    assert [r["id"] for r in picked] == [0, 1, 5, 2, 10, 3, 15, 4]  # in turn while both last
    assert [r["id"] for r in saliency_sample(records[1:5], 8)] == [1, 2, 3, 4]  # no correct one: all incorrect
    assert len(saliency_sample(records, 3)) == 3


def test_verdict_says_plainly_whether_accuracy_moved():
    assert verdict({"change": 0.145, "gained": 30, "lost": 1, "p_value": 3e-8}).startswith(
        "NLFT improved held-out accuracy by +14.5 points")
    assert "within chance" in verdict({"change": 0.01, "gained": 5, "lost": 3, "p_value": 0.73})
    assert "lowered" in verdict({"change": -0.1, "gained": 0, "lost": 20, "p_value": 2e-6})


@pytest.mark.slow
def test_quickstart_with_smollm2_shows_both_halves_of_nlft(smollm2_path, tmp_path, capsys):
    # The default task and prompt, fewer questions: the base model gets some right, so the data has
    # correct and incorrect outputs and the page shows every token class.
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--train-size", "16", "--eval-size", "24", "--epochs", "1",
                 "--saliency-limit", "8", "--no-progress"]) == 0
    captured = capsys.readouterr()
    _check_results(out, n_train=16, n_eval=24, epochs=1.0, saliency_limit=8)
    records = [json.loads(line) for line in (out / "data" / "nlft.jsonl").read_text().splitlines()]
    assert any(r["correct"] for r in records) and not all(r["correct"] for r in records)
    base = json.loads((out / "base-eval" / "metrics.json").read_text())
    assert base["accuracy_flexible"] > 0 and base["ci95_flexible"][0] < base["accuracy_flexible"]
    classes = re.search(r"tokens by class: (.*)", captured.err).group(1)
    counts = {name: int(n) for name, n in re.findall(r"([a-z-]+) (\d+)", classes)}
    assert set(counts) == {"saliency", "sub-saliency", "irrelevant", "erroneous", "near-error"}
    assert all(counts.values()), counts
    assert "eld-out accuracy" in captured.out
    assert "step" not in captured.err  # --no-progress: no training bar


def test_quickstart_refuses_to_train_on_empty_outputs(tiny_dir, tmp_path, capsys):
    model_dir = tiny_dir
    # Greedy, the tiny random model ends every answer at once: nothing to train on, said in one line.
    assert main(["quickstart", "--model", str(model_dir), "--out", str(tmp_path / "qs"), "--train-size", "2",
                 "--eval-size", "2", "--max-new-tokens", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "every output is empty" in err and "nlft.jsonl" in err
    assert not (tmp_path / "qs" / "run").exists()


@pytest.mark.slow  # prepare, train, two evaluations, the page and the plots (about 15 s)
def test_quickstart_on_a_reasoning_gym_task(tiny_dir, tmp_path, capsys):
    out = tmp_path / "qs-rg"
    argv = ["quickstart", "--model", str(tiny_dir), "--dataset", "rg:spell_backward", "--out", str(out),
            "--train-size", "4", "--eval-size", "2", "--epochs", "1", "--max-new-tokens", "8", "--batch-size", "4",
            "--temperature", "1", "--saliency-limit", "2", "--no-progress"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "data" / "nlft.jsonl").read_text().splitlines()]
    assert all(r["task"] == "rg:spell_backward" for r in records)
    assert records[0]["provenance"]["judge"]["kind"] == "rule"
    assert "Answer briefly" in records[0]["provenance"]["template"]["text"]
    held = [json.loads(line) for line in (out / "data" / "held-out.jsonl").read_text().splitlines()]
    assert all(r["task"] == "rg:spell_backward" for r in held)  # `nlft eval --dataset held-out.jsonl` reads them
    assert json.loads((out / "run" / "metrics.json").read_text())["settings"]["task"] == "rg:spell_backward"
    assert "answer_type" not in json.loads((out / "quickstart_args.json").read_text())  # the default is not stored
    assert "flexible grading: the answer in any usual phrasing" in capsys.readouterr().err
