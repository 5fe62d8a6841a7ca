"""`nlft quickstart` end to end: prepare -> train -> evaluate -> saliency map -> plots, and resume."""

from __future__ import annotations

import json
import re

import pytest
from conftest import GSM8K_DIR

from nlft.cli import main


def _check_results(out, n_train: int, n_eval: int, epochs: float) -> None:
    records = [json.loads(line) for line in (out / "data" / "nlft.jsonl").read_text().splitlines()]
    assert len(records) == n_train
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
    assert [e["id"] for e in data["examples"]] == [r["id"] for r in records]
    assert sorted(p.name for p in run.glob("plot_*.png")) == ["plot_accuracy.png", "plot_loss.png",
                                                               "plot_token_classes.png"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["method"] == "nlft" and manifest["epochs"]


def test_quickstart_runs_every_step_and_resumes(tiny_model, tokenizer, tmp_path, capsys):
    model_dir = tmp_path / "tiny"
    tiny_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "qs"
    argv = ["quickstart", "--model", str(model_dir), "--dataset", "chain_sum", "--out", str(out), "--train-size", "4",
            "--eval-size", "2", "--epochs", "1", "--max-new-tokens", "8", "--batch-size", "4", "--no-progress"]
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


@pytest.mark.slow
def test_quickstart_with_smollm2_on_gsm8k(smollm2_path, tmp_path):
    if not (GSM8K_DIR / "train.jsonl").exists():
        pytest.skip(f"GSM8K not found in {GSM8K_DIR} (set NLFT_GSM8K_DIR)")
    out = tmp_path / "qs"
    assert main(["quickstart", "--data-dir", str(GSM8K_DIR), "--out", str(out), "--train-size", "4",
                 "--eval-size", "2", "--epochs", "1", "--max-new-tokens", "48", "--batch-size", "4",
                 "--saliency-limit", "4", "--no-progress"]) == 0
    _check_results(out, n_train=4, n_eval=2, epochs=1.0)
