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
    with pytest.raises(ValueError, match="choose one of warn, stop, off"):
        DriftMonitor(action="halt")
    with pytest.raises(ValueError, match="above 1"):
        DriftMonitor(factor=0.9)
    from nlft.train.options import TrainOptions

    assert TrainOptions().drift_factor == DEFAULT_FACTOR and TrainOptions().drift_action == "warn"


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
    assert _diverging(tiny_dir, data_file, out, "--resume") == 0
    assert capsys.readouterr().err.count("drift monitor: at epoch 2.00 (step 4)") == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["global_step"] == 8 and "stopped" not in manifest
    assert manifest["drift_monitor"]["fired"] and not manifest["drift_monitor"]["stopped"]
    assert manifest["kept"] == {"keep": "last", "epoch": 4.0}
