"""``nlft train`` and ``nlft eval`` killed with SIGKILL and rerun end where an uninterrupted run ends.

The model is a tiny random Llama saved with SmolLM2's tokenizer to a temporary folder, so a real
``nlft`` process trains and generates with it in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support import assert_one_row_per_id, env, nlft_cmd, run_and_kill, sample_records

from nlft.train.rundir import last_checkpoint
from nlft.utils.files import read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "nlft.jsonl"
    rows = []
    for k in range(6):  # 24 records: 12 steps per epoch at batch 2
        for r in sample_records():
            rows.append({**r, "question": f"{r['question']} (variant {k})"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def train_cmd(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return nlft_cmd("train", "--method", "nlft", "--model", str(model), "--data", str(data), "--out", str(out),
                    "--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--save-steps", "4", "--seed", "3",
                    "--lora-r", "4", "--lora-alpha", "8", *extra)


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


@pytest.mark.parametrize("view_probs", ["dynamic", "per_epoch", "cached"])
def test_train_killed_mid_epoch_resumes_to_the_same_adapter(tmp_path, tiny_dir, train_data, view_probs):
    """SIGKILL once the first checkpoint (step 4 of 12 in epoch 1) is complete; ``--resume`` ends with
    the adapter of an uninterrupted run: same seed, equal within float32 tolerance.

    ``per_epoch`` and ``cached`` hold P_std / P_judge computed at an epoch's (or the run's) start: each
    checkpoint stores that cache, and the resumed run reloads it instead of recomputing it.
    """
    extra = ("--view-probs", view_probs)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    proc = subprocess.run(train_cmd(tiny_dir, train_data, clean, *extra), env=env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run_and_kill(train_cmd(tiny_dir, train_data, killed, *extra), killed / "checkpoint-4" / "trainer_state.json",
                 min_lines=1, timeout=300, env=env())
    ckpt = last_checkpoint(killed)
    assert ckpt is not None and not (killed / "adapter").exists()
    step = int(Path(ckpt).name.split("-")[1])
    assert step < 24, "the kill came too late to test a resume"
    # a crash in the middle of the next save leaves a folder without trainer_state.json: never resumed from
    partial = killed / f"checkpoint-{step + 4}"
    shutil.copytree(ckpt, partial)
    (partial / "trainer_state.json").unlink()

    proc = subprocess.run([*train_cmd(tiny_dir, train_data, killed, *extra), "--resume"], env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = adapter(clean), adapter(killed)
    assert a.keys() == b.keys() and a
    assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)  # training moved the adapter
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)
    state = json.loads((Path(last_checkpoint(killed)) / "trainer_state.json").read_text())
    assert state["global_step"] == 24
    # the data report, measured before the first step of the first attempt, survives the resume
    classes = json.loads((clean / "manifest.json").read_text())["token_classes"]
    assert classes["incorrect_outputs"] > 0
    assert json.loads((killed / "manifest.json").read_text())["token_classes"] == classes


def test_train_refuses_to_overwrite_and_reports_bad_data(tmp_path, tiny_dir, train_data):
    """A rerun without --resume is refused; a malformed row is named by file, line and field (exit 2)."""
    bad = tmp_path / "bad.jsonl"
    rows = [json.loads(line) for line in train_data.read_text().splitlines()[:3]]
    rows[2]["output"] = "   "
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run(train_cmd(tiny_dir, bad, tmp_path / "run"), env=env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert f"nlft train: error: {bad}, line 3, field 'output': empty or whitespace-only text" in proc.stderr
    assert "Traceback" not in proc.stderr

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(rows[0]) + "\n{\"question\": \n")
    proc = subprocess.run(train_cmd(tiny_dir, broken, tmp_path / "run2"), env=env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"nlft train: error: {broken}, line 2: malformed JSON" in proc.stderr


def test_eval_killed_and_rerun_equals_an_uninterrupted_run(tmp_path, tiny_dir):
    """``nlft eval`` with sampling (temperature 0.7), SIGKILLed after 2 of 6 batches: the rerun adds the
    missing predictions only, and every prediction equals the uninterrupted run's."""
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{k}", "question": f"What is {k} + {k}?", "answer": str(2 * k)})
                            + "\n" for k in range(12)))

    def cmd(out: Path) -> list[str]:
        return nlft_cmd("eval", "--model", str(tiny_dir), "--dataset", str(data), "--out", str(out), "--batch-size",
                        "2", "--max-new-tokens", "48", "--temperature", "0.7", "--seed", "5", "--backend", "hf",
                        "--no-progress")

    clean, killed = tmp_path / "clean", tmp_path / "killed"
    proc = subprocess.run(cmd(clean), env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_and_kill(cmd(killed), killed / "predictions.jsonl", min_lines=4, timeout=300, env=env())
    before = {r["id"] for r in read_jsonl(killed / "predictions.jsonl", tolerate_torn_tail=True)}
    assert 4 <= len(before) < 12
    proc = subprocess.run(cmd(killed), env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = [f"q{k}" for k in range(12)]
    got = {r["id"]: r for r in assert_one_row_per_id(killed / "predictions.jsonl", ids)}
    want = {r["id"]: r for r in read_jsonl(clean / "predictions.jsonl")}
    assert [got[i]["output"] for i in ids] == [want[i]["output"] for i in ids]
    m_clean = json.loads((clean / "metrics.json").read_text())
    m_killed = json.loads((killed / "metrics.json").read_text())
    assert m_killed["n"] == 12 and m_killed["accuracy_strict"] == m_clean["accuracy_strict"]
