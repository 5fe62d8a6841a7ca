"""Hugging Face conventions: a model card in every adapter folder, --push-to-hub, --report-to tensorboard."""

from __future__ import annotations

import inspect
import json
import subprocess

import pytest
from support import env, make_tiny_model, nlft_cmd

from nlft.cli import main


def _train(tiny_dir, data_file, out, *extra: str) -> int:
    return main(["train", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(out), "--max-steps", "2",
                 "--batch-size", "2", "--logging-steps", "1", *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_dir, data_file):
    out = tmp_path_factory.mktemp("runs") / "nlft"
    assert _train(tiny_dir, data_file, out, "--p0-correct", "0.9", "--report-to", "tensorboard") == 0
    return out


def test_model_card_as_trl_writes_one(run, tokenizer, data_file):
    from huggingface_hub import ModelCard
    from peft import PeftModel

    card = ModelCard.load(run / "adapter" / "README.md")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert {"nlft", "arxiv:2412.20382", "lora", "peft"} <= set(card.data.tags)
    assert "base_model" not in card.data.to_dict()  # a local folder is no Hub id
    text = card.text
    assert "trained with NLFT (Natural Language Fine-Tuning, Liu et al. 2024, [arXiv 2412.20382]" in text
    assert "`p0_correct` 0.9" in text and "`lora_r` 16" in text and "`lr` 5e-05" in text
    assert f"- data: `{data_file.name}` (4 rows: 2 correct, 2 incorrect outputs)" in text
    assert "| train_loss |" in text and "- peft " in text and "- transformers " in text
    # the folder still loads as a PEFT adapter
    model = PeftModel.from_pretrained(make_tiny_model(len(tokenizer)), run / "adapter")
    assert model.peft_config["default"].r == 16


def test_model_card_names_a_hub_base_model(tmp_path):
    from nlft.train.hub import SMOLLM2_HUB_ID, model_card
    from nlft.train.rundir import write_config

    write_config(tmp_path, {"method": "sft", "model": "smollm2", "sft_data": "outputs"})
    meta, text = model_card(tmp_path)
    assert meta["base_model"] == SMOLLM2_HUB_ID and f"base_model:adapter:{SMOLLM2_HUB_ID}" in meta["tags"]
    assert "trained with SFT, a baseline of NLFT" in text and "`sft_data` outputs" in text


def test_push_to_hub_uploads_the_adapter_folder(tmp_path, tiny_dir, data_file, monkeypatch):
    """The upload goes through huggingface_hub's HfApi; the calls are checked against its real signatures."""
    from huggingface_hub import HfApi

    calls = []

    def recorder(name):
        real = inspect.signature(getattr(HfApi, name))

        def call(self, *args, **kwargs):
            calls.append((name, real.bind(self, *args, **kwargs).arguments))

        return call

    monkeypatch.setattr(HfApi, "create_repo", recorder("create_repo"))
    monkeypatch.setattr(HfApi, "upload_folder", recorder("upload_folder"))
    out = tmp_path / "run"
    assert _train(tiny_dir, data_file, out, "--push-to-hub", "someone/nlft-tiny", "--hub-private") == 0
    assert [name for name, _ in calls] == ["create_repo", "upload_folder"]
    create, upload = calls[0][1], calls[1][1]
    assert (create["repo_id"], create["private"], create["exist_ok"]) == ("someone/nlft-tiny", True, True)
    assert (upload["repo_id"], upload["repo_type"]) == ("someone/nlft-tiny", "model")
    assert upload["folder_path"] == str(out / "adapter")
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in (out / "adapter").iterdir()}


def test_report_to_tensorboard_writes_the_nlft_metrics(run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((run / "runs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/nlft/nll", "train/nlft/mean_scale", "train/nlft/saliency_share"} <= tags
    logged = [json.loads(x) for x in (run / "log_history.jsonl").read_text().splitlines()]
    steps = {e.step: e.value for e in acc.Scalars("train/nlft/nll")}
    assert steps == {x["step"]: pytest.approx(x["nlft/nll"], rel=1e-5) for x in logged if "nlft/nll" in x}


def test_report_to_trackio_where_installed(tmp_path, tiny_dir, data_file):
    from importlib.util import find_spec

    if find_spec("trackio") is None:
        pytest.skip("trackio is not installed")
    # trackio reads TRACKIO_DIR when imported: a fresh process
    proc = subprocess.run(nlft_cmd("train", "--model", str(tiny_dir), "--data", str(data_file), "--out",
                                   str(tmp_path / "run"), "--max-steps", "2", "--batch-size", "2", "--report-to",
                                   "trackio"), env=env(TRACKIO_DIR=str(tmp_path / "trackio")), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "trackio").rglob("*.db")), "no trackio database"


def test_reft_card_points_at_the_warm_up_model(tmp_path):
    from nlft.train.hub import model_card
    from nlft.train.rundir import write_config
    from nlft.utils.files import atomic_write_json

    write_config(tmp_path, {"method": "reft", "model": "smollm2", "reft_algo": "grpo"})
    atomic_write_json(tmp_path / "manifest.json", {"method": "reft", "final": {"model": "warmup/model",
                                                                                "adapter": "adapter"}})
    _, text = model_card(tmp_path)
    assert "applies to the warm-up model, `warmup/model` in the run directory" in text
    assert 'AutoModelForCausalLM.from_pretrained("warmup/model")' in text and "`reft_algo` grpo" in text


def test_model_card_names_the_questions_and_the_base_model(tmp_path):
    """The heading names the method and the base model, not the folder; the card says which questions the accuracy
    was measured on, gives the base model's on the same ones, and train_runtime's unit."""
    import json

    from nlft.train.hub import model_card
    from nlft.train.rundir import write_config

    run = tmp_path / "run"
    write_config(run, {"method": "nlft", "model": "smollm2"})
    (run / "manifest.json").write_text(json.dumps({"method": "nlft", "metrics": {"train/train_loss": 0.61,
                                                                                  "train/train_runtime": 83.4567}}))
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.0, "accuracy_flexible": 0.31, "n": 200,
                                                           "data": "held-out.jsonl", "split": "test"}))
    (tmp_path / "base-eval").mkdir()
    (tmp_path / "base-eval" / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.0, "accuracy_flexible": 0.165,
                                                                     "n": 200, "data": "held-out.jsonl"}))
    _, text = model_card(run)
    assert text.startswith("# NLFT (Natural Language Fine-Tuning) LoRA adapter of "
                           "HuggingFaceTB/SmolLM2-135M-Instruct\n")
    assert "# run" not in text
    assert "| train_runtime (s) | 83.5 |" in text
    assert "Accuracy on 200 questions of `held-out.jsonl`, split test: flexible 31.0%" in text
    assert "The base model on the same questions: flexible 16.5%, strict 0.0%." in text
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    metrics["vs_base"] = {"folder": "b", "flexible": {"before": 0.165, "after": 0.31, "change": 0.145, "gained": 30,
                                                      "lost": 1, "p_value": 3e-08, "n": 200}}
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    _, text = model_card(run)
    assert "flexible 16.5% -> 31.0% (+14.5 points: 30 gained, 1 lost, exact paired p=3e-08)" in text
