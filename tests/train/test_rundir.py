"""Run directories: config round trip, manifest contents, peak memory, log and eval histories, with a real Trainer."""

from __future__ import annotations

import json
import os

import pytest
import torch
from support import REPO

from nlft.train.rundir import (
    RunRecorder,
    append_eval_history,
    last_checkpoint,
    package_versions,
    read_config,
    write_config,
)
from nlft.utils.files import DataError


def test_config_round_trip(tmp_path):
    config = {"method": "nlft", "lr": 5e-5, "lora_targets": None, "epochs": 10.0, "report_to": "none"}
    path = write_config(tmp_path, config)
    assert path.name == "config.yaml"
    assert read_config(path) == config
    assert list(read_config(path)) == list(config)  # order kept
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(DataError, match=r"bad\.yaml: expected a mapping"):
        read_config(bad)
    bad.write_text("a: [1\n")
    with pytest.raises(DataError, match="malformed YAML"):
        read_config(bad)


def test_package_versions():
    versions = package_versions()
    assert versions["torch"] == torch.__version__
    assert versions["nlft"]
    assert package_versions(("surely-not-installed-xyz",))["surely-not-installed-xyz"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="measures CPU RSS")
def test_peak_memory_sees_a_short_lived_allocation():
    """A 256 MiB tensor freed before stop() still shows in the peak (sampled during the stretch).

    Measured in a fresh process: in the test process, memory freed by earlier tests stays resident
    and a new tensor may reuse it without raising the RSS at all.
    """
    import subprocess
    import sys

    child = (
        "import time, torch\n"
        "from nlft.train.memory import PeakMemory\n"
        "meter = PeakMemory(interval=0.01)\n"
        "meter.start()\n"
        "base = meter._peak\n"
        "x = torch.ones(64 * 2**20)\n"  # 256 MiB of float32, touched
        "time.sleep(0.2)\n"
        "del x\n"
        "kind, peak = meter.stop()\n"
        "print(kind, peak - base)\n"
    )
    src = str(REPO / "src")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": src}, check=True).stdout.split()
    assert out[0] == "cpu_rss"
    assert int(out[1]) > 200 * 2**20


def test_recorder_with_a_real_trainer(tmp_path, tiny_model):
    """Two epochs of a plain Trainer: log_history.jsonl per log, manifest with per-epoch time and memory."""
    from transformers import Trainer, TrainingArguments

    data = [{"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8]} for _ in range(4)]
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=2,
                             logging_steps=1, save_strategy="epoch", report_to="none", use_cpu=True)
    recorder = RunRecorder(tmp_path, method="test", seed=3, config={"lr": 1e-3})
    Trainer(model=tiny_model, args=args, train_dataset=data, callbacks=[recorder]).train()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["method"] == "test" and manifest["seed"] == 3 and manifest["config"] == {"lr": 1e-3}
    assert [e["epoch"] for e in manifest["epochs"]] == [1.0, 2.0]
    assert [e["global_step"] for e in manifest["epochs"]] == [2, 4]
    assert all(e["wall_time_s"] > 0 and e["peak_memory_bytes"] > 0 for e in manifest["epochs"])
    assert manifest["global_step"] == 4 and manifest["train_wall_time_s"] > 0
    logs = [json.loads(x) for x in (tmp_path / "log_history.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs if "loss" in x] == [1, 2, 3, 4]
    assert last_checkpoint(tmp_path).endswith("checkpoint-4")
    append_eval_history(tmp_path, 1.0, {"accuracy_strict": 0.5, "accuracy_flexible": 0.75, "n": 4})
    assert json.loads((tmp_path / "eval_history.jsonl").read_text()) == {
        "epoch": 1.0, "accuracy_strict": 0.5, "accuracy_flexible": 0.75, "n": 4}


def test_epoch_eval_on_a_merged_copy_leaves_the_trained_model_alone(tmp_path, tokenizer):
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model
    from support import make_tiny_model

    from nlft.train.callbacks import EpochEvalCallback

    torch.manual_seed(0)
    model = get_peft_model(make_tiny_model(len(tokenizer)), LoraConfig(
        r=4, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = [{"id": f"q{i}", "question": f"What is {i} + 1?", "gold": str(i + 1)} for i in range(3)]
    results = {}
    for merge in (True, False):
        run = tmp_path / f"merge-{merge}"
        callback = EpochEvalCallback(run, tokenizer, rows, merge_adapter=merge, batch_size=3, max_new_tokens=4)
        callback.on_epoch_end(None, SimpleNamespace(epoch=1.0, global_step=2), None, model=model)
        history = [json.loads(x) for x in (run / "eval_history.jsonl").read_text().splitlines()]
        assert len(history) == 1 and history[0]["n"] == 3 and history[0]["global_step"] == 2
        results[merge] = [json.loads(x)["output"] for x in
                          (run / "eval" / "epoch-1" / "predictions.jsonl").read_text().splitlines()]
    assert model.training and hasattr(model, "merge_and_unload")  # still the PEFT model being trained
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert len(results[True]) == len(results[False]) == 3
