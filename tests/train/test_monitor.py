"""The drift monitor: its measure on hand-made and logged histories, and real tiny-model runs it warns in or stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlft.cli import main
from nlft.tasks.prompts import BASE_TEMPLATE
from nlft.train.monitor import DEFAULT_FACTOR, DriftMonitor, drift
from nlft.train.rundir import resolve_run_path

DATA = Path(__file__).resolve().parent / "drift"


def _read(name: str) -> list[dict]:
    return [json.loads(x) for x in (DATA / name).read_text().splitlines()]


def test_drift_on_a_hand_made_history():
    """First epoch nll 1.0, 0.8, 0.6, 0.6: baseline 0.75, window 4 // 4 = 1 entry.

    Epoch 1.25: 0.9 / 0.75 = 1.2 (below 1.5); epoch 1.5: 1.2 / 0.75 = 1.6 > 1.5: fires there, at step 6.
    The erroneous share, 0.1 in the first epoch, is 0.2 where it fires: ratio 2.
    """
    rows = [{"step": s, "epoch": s / 4, "nlft/nll": v, "nlft/erroneous_share": share}
            for s, v, share in [(1, 1.0, 0.1), (2, 0.8, 0.1), (3, 0.6, 0.1), (4, 0.6, 0.1), (5, 0.9, 0.15),
                                (6, 1.2, 0.2), (7, 3.0, 0.3)]]
    rows.insert(4, {"step": 4, "epoch": 1.0, "train_runtime": 3.0})  # no nlft/nll: skipped
    report = drift(rows, factor=1.5)
    assert report.fired and (report.step, report.epoch) == (6, 1.5)
    assert report.baseline_nll == pytest.approx(0.75) and report.nll == pytest.approx(1.2)
    assert report.nll_ratio == pytest.approx(1.6) and report.share_ratio == pytest.approx(2.0)
    assert "1.60x its first-epoch value (0.750 -> 1.200, limit 1.5x)" in report.message()
    assert not drift(rows[:5], factor=1.5).fired  # still in the first epoch: no baseline yet
    quiet = drift(rows[:6], factor=1.5)
    assert not quiet.fired and quiet.max_nll_ratio == pytest.approx(1.2)
    assert not drift(rows, factor=5.0).fired and drift(rows, factor=5.0).max_nll_ratio == pytest.approx(4.0)


def test_replay_fires_on_the_collapsed_cell_not_on_the_healthy_one():
    """The study's logged histories (tests/train/drift/README.md): NLFT at N = 200 collapsed, at N = 50 it did not."""
    collapsed = drift(_read("nlft-n200-s0.jsonl"))
    healthy = drift(_read("nlft-n50-s0.jsonl"))
    assert collapsed.fired and 1.0 < collapsed.epoch < 3.0
    assert not healthy.fired and healthy.max_nll_ratio < DEFAULT_FACTOR
    # the default has room on both sides
    assert healthy.max_nll_ratio * 1.1 < DEFAULT_FACTOR < drift(_read("nlft-n200-s0.jsonl"), 100).max_nll_ratio / 1.1


def test_monitor_options_are_checked():
    with pytest.raises(ValueError, match="choose one of restore, stop, warn, off"):
        DriftMonitor(action="halt")
    with pytest.raises(ValueError, match="above 1"):
        DriftMonitor(factor=0.9)
    from nlft.train.options import TrainOptions

    assert TrainOptions().drift_factor == DEFAULT_FACTOR and TrainOptions().drift_action == "restore"


def test_nlft_trainer_monitors_by_default(tmp_path, tiny_model, tokenizer, records):
    from nlft import NLFTConfig, NLFTTrainer

    args = NLFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = NLFTTrainer(tiny_model, args, train_dataset=records, processing_class=tokenizer)
    assert sum(isinstance(c, DriftMonitor) for c in trainer.callback_handler.callbacks) == 1
    mine = DriftMonitor(factor=3.0, action="stop")
    trainer = NLFTTrainer(tiny_model, args, train_dataset=records, processing_class=tokenizer, callbacks=[mine])
    assert [c for c in trainer.callback_handler.callbacks if isinstance(c, DriftMonitor)] == [mine]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from support import sample_records

    path = tmp_path_factory.mktemp("data") / "nlft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_records()))
    (path.parent / "prompt.txt").write_text(BASE_TEMPLATE)
    return path


def _diverging(tiny_dir, data_file, out, *extra: str) -> int:
    """NLFT with a learning rate of 1 after 4 warm-up steps: the first epoch barely moves, the second blows up.

    4 records, batch 2: two steps per epoch. Measured: nlft/nll 10.84, 10.86 in epoch 1, 18.4 at
    step 4 (1.7x): the monitor fires at the end of epoch 2.
    """
    return main(["train", "--method", "nlft", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(out),
                 "--full", "--lr", "1.0", "--warmup", "4", "--epochs", "4", "--batch-size", "2",
                 "--base-template", str(data_file.parent / "prompt.txt"), *extra])


def test_monitor_stops_a_real_run_and_the_run_resumes_or_reports(tmp_path, tiny_dir, data_file, capsys):
    out = tmp_path / "run"
    assert _diverging(tiny_dir, data_file, out, "--drift-action", "stop") == 0
    err = capsys.readouterr().err
    assert err.count("drift monitor: at epoch 2.00 (step 4)") == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stopped"]["by"] == "drift monitor" and manifest["stopped"]["step"] == 4
    assert manifest["stopped"]["reason"].startswith("drift monitor: at epoch 2.00")
    assert manifest["drift_monitor"]["fired"] and manifest["drift_monitor"]["stopped"]
    assert manifest["global_step"] == 4 and resolve_run_path(manifest["final"]["model"], out) == str(out / "model")
    assert (out / "checkpoint-4").is_dir()

    # resumed with the stop still on: says what happened and what to do, trains nothing
    logged = (out / "log_history.jsonl").read_text()
    assert _diverging(tiny_dir, data_file, out, "--drift-action", "stop", "--resume") == 0
    assert "was stopped by the drift monitor at epoch 2.00, step 4" in capsys.readouterr().err
    assert (out / "log_history.jsonl").read_text() == logged

    # resumed with a warning only: continues from the checkpoint to the end, warns once
    assert _diverging(tiny_dir, data_file, out, "--resume", "--drift-action", "warn") == 0
    assert capsys.readouterr().err.count("drift monitor: at epoch 2.00 (step 4)") == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["global_step"] == 8 and "stopped" not in manifest
    assert manifest["drift_monitor"]["fired"] and not manifest["drift_monitor"]["stopped"]
    assert manifest["kept"] == {"keep": "last", "epoch": 4.0}


def test_by_default_a_drifting_run_ends_with_the_weights_from_before_the_drift(tmp_path, tiny_dir, data_file, capsys):
    """The same diverging run with the default ``--drift-action restore``: the monitor fires at step 4 (the end of
    epoch 2), training stops, and the saved model is the last checkpoint before the drift (step 2, the end of
    epoch 1), not the drifted weights of step 4; the console and the manifest say so."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    assert _diverging(tiny_dir, data_file, out, "--save-total-limit", "1") == 0
    err = capsys.readouterr().err
    assert "stopping and restoring checkpoint-2, the last checkpoint before the drift" in err
    assert "the weights kept are checkpoint-2's, from before the drift" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stopped"]["step"] == 4 and manifest["stopped"]["restored"] == "checkpoint-2"
    assert manifest["stopped"]["action"] == "restore" and manifest["drift_monitor"]["restored"] == "checkpoint-2"
    final = load_file(str(out / "model" / "model.safetensors"))
    before = load_file(str(out / "checkpoint-2" / "model.safetensors"))
    assert all(bool((final[k] == before[k]).all()) for k in final)
    # the drifted weights were different: the restore is what changed the result
    history = [json.loads(x) for x in (out / "log_history.jsonl").read_text().splitlines()]
    assert max(h["nlft/nll"] for h in history if "nlft/nll" in h and h["step"] == 4) > 1.5 * min(
        h["nlft/nll"] for h in history if "nlft/nll" in h and h["step"] <= 2)
    # a resumed run reports the stop and trains nothing
    assert _diverging(tiny_dir, data_file, out, "--save-total-limit", "1", "--resume") == 0
    assert "was stopped by the drift monitor" in capsys.readouterr().err
