"""``nlft train --keep best``: a real tiny-model run keeps its best validation epoch; the validation set stays apart."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from nlft.cli import main
from nlft.tasks.prompts import BASE_TEMPLATE
from nlft.train.selection import check_validation_source, metric_name
from nlft.utils.files import DataError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Eight training outputs that all end in 7, and four validation questions whose answer is 7."""
    root = tmp_path_factory.mktemp("sel")
    rows = [{"question": f"What is {i} + {7 - i}?", "reference": f"{i} + {7 - i} = 7\n#### 7", "output": "#### 7",
             "correct": True, "judgment": None} for i in range(8)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "prompt.txt").write_text(BASE_TEMPLATE)  # training (and so evaluation) prompt: the short one
    (root / "val.jsonl").write_text("".join(json.dumps({"question": f"What is {i} plus {7 - i}?", "answer": "#### 7"})
                                            + "\n" for i in range(4)))
    return root


@pytest.mark.slow
def test_keep_best_keeps_the_best_validation_epoch(tmp_path, smollm2_tiny_dir, files, capsys):
    """Full fine-tuning of the tiny model (SmolLM2's vocabulary) at lr 1e-2 for 6 epochs, one new token per
    validation answer.

    Measured: flexible accuracy 0, 0, 1, 0, 0, 0 over the epochs (the model says "7" after epoch 3 only),
    so the kept weights are epoch 3's, not the last epoch's.
    """
    tiny_dir = smollm2_tiny_dir
    out = tmp_path / "run"
    assert main(["train", "--method", "sft", "--model", str(tiny_dir), "--data", str(files / "train.jsonl"),
                 "--out", str(out), "--full", "--lr", "1e-2", "--epochs", "6", "--batch-size", "4",
                 "--base-template", str(files / "prompt.txt"),
                 "--eval-each-epoch", "--eval-data", str(files / "val.jsonl"), "--eval-max-new-tokens", "1",
                 "--eval-batch-size", "4", "--keep", "best", "--best-metric", "accuracy_flexible"]) == 0
    err = capsys.readouterr().err
    history = [json.loads(x) for x in (out / "eval_history.jsonl").read_text().splitlines()]
    accuracies = [h["accuracy_flexible"] for h in history]
    best = history[accuracies.index(max(accuracies))]  # the first epoch with the highest accuracy
    manifest = json.loads((out / "manifest.json").read_text())
    kept = manifest["kept"]
    assert (kept["keep"], kept["epoch"], kept["global_step"], kept["value"]) == (
        "best", best["epoch"], best["global_step"], best["accuracy_flexible"])
    assert kept["metric"] == "accuracy_flexible" and kept["n"] == 4
    assert f"kept epoch {best['epoch']:g} (step {best['global_step']}): validation accuracy_flexible" in err
    assert manifest["trainer_args"]["metric_for_best_model"] == "accuracy_flexible"
    # the saved model is the best epoch's checkpoint (kept by the Trainer's rotation), not the last epoch's
    final = load_file(str(out / "model" / "model.safetensors"))
    at_best = load_file(str(out / f"checkpoint-{best['global_step']}" / "model.safetensors"))
    assert all(bool((final[k] == at_best[k]).all()) for k in final)
    last = history[-1]
    if last["global_step"] != best["global_step"]:
        at_last = load_file(str(out / f"checkpoint-{last['global_step']}" / "model.safetensors"))
        assert any(not bool((final[k] == at_last[k]).all()) for k in final)
    assert accuracies[-1] < max(accuracies), "the case this test is for: the last epoch is not the best"
    # the validation set is explicit in the run directory, and no report is computed on it
    validation = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    assert [v["question"] for v in validation] == [f"What is {i} plus {7 - i}?" for i in range(4)]
    assert manifest["validation"] == {"file": "validation.jsonl", "data": str(files / "val.jsonl"), "split": None,
                                      "n": 4}
    assert main(["eval", "--run", str(out), "--dataset", str(files / "val.jsonl"), "--out", str(tmp_path / "ev"),
                 "--no-progress"]) == 2
    assert "4 of these 4 questions chose the run's kept epoch" in capsys.readouterr().err


def test_keep_best_needs_per_epoch_evaluation_on_questions_other_than_the_tests(tmp_path, files, capsys):
    base = ["train", "--data", str(files / "train.jsonl"), "--out", str(tmp_path / "r"), "--keep", "best"]
    assert main(base) == 2
    assert "--keep best needs --eval-each-epoch" in capsys.readouterr().err
    assert main([*base, "--eval-each-epoch", "--eval-data", "chain_sum"]) == 2  # --eval-split defaults to test
    assert "give --eval-split validation" in capsys.readouterr().err
    check_validation_source("chain_sum", "validation")
    check_validation_source(str(files / "val.jsonl"), "test")  # a file: its own set
    with pytest.raises(DataError, match="cannot be the test questions"):
        check_validation_source("gsm8k", "test")
    assert metric_name("eval_accuracy_strict") == "accuracy_strict"
    with pytest.raises(ValueError, match="choose one of accuracy_strict, accuracy_flexible"):
        metric_name("loss")


def test_eval_steps_measures_every_n_steps_and_at_the_last_and_keeps_the_best(tmp_path, smollm2_tiny_dir, files):
    """``--eval-steps 3 --max-steps 7``: evaluations after steps 3, 6 and 7 (the last), each in ``eval/step-N``,
    and ``--keep best`` keeps the first of the best of those three (the rule of the epoch-wise selection)."""
    out = tmp_path / "run"
    assert main(["train", "--method", "sft", "--model", str(smollm2_tiny_dir), "--data", str(files / "train.jsonl"),
                 "--out", str(out), "--full", "--lr", "1e-2", "--max-steps", "7", "--batch-size", "2",
                 "--base-template", str(files / "prompt.txt"), "--eval-steps", "3",
                 "--eval-data", str(files / "val.jsonl"), "--eval-max-new-tokens", "1", "--eval-batch-size", "4",
                 "--keep", "best", "--best-metric", "accuracy_flexible", "--no-progress"]) == 0
    history = [json.loads(x) for x in (out / "eval_history.jsonl").read_text().splitlines()]
    assert [h["global_step"] for h in history] == [3, 6, 7]
    assert all((out / "eval" / f"step-{h['global_step']}" / "metrics.json").exists() for h in history)
    accuracies = [h["accuracy_flexible"] for h in history]
    kept = json.loads((out / "manifest.json").read_text())["kept"]
    assert kept["global_step"] == history[accuracies.index(max(accuracies))]["global_step"]
    assert kept["value"] == max(accuracies)
