"""`nlft train`: options (YAML + flags), every method end to end on a tiny model, run directories, resume."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml
from support import GSM8K_DIR, REPO, sample_records

from nlft.cli import main
from nlft.commands.train import add_arguments, resolve_options
from nlft.train.options import TrainOptions
from nlft.utils.files import DataError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "nlft.jsonl"
    extra = {"id": "x", "gold": "7", "provenance": {"model": "m", "seed": 1}}
    path.write_text("".join(json.dumps({**r, **extra, "id": f"r{i}"}) + "\n" for i, r in enumerate(sample_records())))
    return path


def test_options_yaml_then_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: sft\nlr: 5e-5\nlora-r: 8\nepochs: 3\ndata: d.jsonl\nout: o\nuse_chat_template: false\n")
    opts = resolve_options(_parse(["--config", str(cfg), "--lora-r", "4", "--p0-correct", "0.9"]))
    # YAML reads "5e-5" as a string: coerced to float; flags override YAML; the rest keeps defaults
    assert (opts.method, opts.lr, opts.lora_r, opts.epochs) == ("sft", 5e-5, 4, 3.0)
    assert opts.p0_correct == 0.9 and opts.use_chat_template is False and opts.batch_size == 4
    assert opts.lora_alpha == 16 and opts.lora_dropout == 0.05 and opts.lr_scheduler == "cosine"


def test_options_errors_name_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: d.jsonl\nout: o\nlora_rank: 8\n")
    with pytest.raises(DataError, match=r"c.yaml, field 'lora_rank': unknown option 'lora_rank' \(did you mean "
                                        r"'lora_r'\?\)"):
        resolve_options(_parse(["--config", str(cfg)]))
    cfg.write_text("data: d.jsonl\nout: o\nbatch_size: many\n")
    with pytest.raises(DataError, match="field 'batch_size'"):
        resolve_options(_parse(["--config", str(cfg)]))
    cfg.write_text("data: d.jsonl\nout: o\nmethod: dpo\n")
    with pytest.raises(DataError, match="field 'method': 'dpo' is not valid; choose one of nlft, sft, dft, cut, reft"):
        resolve_options(_parse(["--config", str(cfg)]))
    with pytest.raises(DataError, match="no training data"):
        resolve_options(_parse(["--out", "o"]))


def _train(tiny_dir, data_file, out, *extra: str) -> int:
    return main(["train", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(out), "--max-steps", "2",
                 "--batch-size", "2", *extra])


def _check_run(out, method: str, lr: float = 5e-5) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == method and manifest["seed"] == 42
    assert manifest["packages"]["torch"] and manifest["machine"]["cpu_count"] >= 1
    assert manifest["epochs"], "per-epoch wall time and memory"
    for epoch in manifest["epochs"]:
        assert epoch["wall_time_s"] > 0 and epoch["peak_memory_bytes"] > 10 * 2**20
    logs = [json.loads(x) for x in (out / "log_history.jsonl").read_text().splitlines()]
    assert any("loss" in x and "step" in x and "epoch" in x for x in logs)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == method and config["lr"] == lr
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["down_proj", "gate_proj", "up_proj"]
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (16, 16, 0.05)
    return {"manifest": manifest, "logs": logs, "config": config}


def test_train_nlft_writes_run_directory(tmp_path, tiny_dir, data_file):
    out = tmp_path / "nlft"
    assert _train(tiny_dir, data_file, out, "--p0-correct", "0.9") == 0
    run = _check_run(out, "nlft")
    assert run["config"]["p0_correct"] == 0.9 and run["config"]["c1"] == 5.0  # knobs written resolved
    assert any("nlft/mean_scale" in x for x in run["logs"])
    # paths relative to the run directory (the adapter) or absolute (the base model): the run can move
    assert run["manifest"]["final"] == {"model": str(tiny_dir.resolve()), "adapter": "adapter"}
    # the written config.yaml is a valid --config file that gives back the same options
    again = resolve_options(_parse(["--config", str(out / "config.yaml")]))
    assert again.p0_correct == 0.9 and again.data == str(data_file)
    # an existing run is not overwritten without --resume
    assert _train(tiny_dir, data_file, out) == 2


def test_train_cut(tmp_path, tiny_dir, data_file):
    out = tmp_path / "cut"
    assert _train(tiny_dir, data_file, out, "--method", "cut", "--cut-threshold", "1.2") == 0
    run = _check_run(out, "cut")
    assert run["config"]["cut_threshold"] == 1.2


def test_train_sft_learns_and_evaluates_each_epoch(tmp_path, tiny_dir, data_file):
    from safetensors.torch import load_file

    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "What is 3 + 4?", "answer": "#### 7"}) + "\n"
                         + json.dumps({"question": "What is 2 + 2?", "answer": "#### 4"}) + "\n")
    out = tmp_path / "sft"
    assert _train(tiny_dir, data_file, out, "--method", "sft", "--lr", "1e-3", "--eval-each-epoch",
                  "--eval-data", str(questions),
                  "--eval-max-new-tokens", "3", "--eval-batch-size", "2") == 0
    _check_run(out, "sft", lr=1e-3)
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(float(v.abs().max()) > 0 for v in lora_b)  # B starts at zero: trained
    # 2 correct outputs, batch 2: one step per epoch, so --max-steps 2 gives two epochs and two evaluations
    history = [json.loads(x) for x in (out / "eval_history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1.0, 2.0] and all(h["n"] == 2 for h in history)
    assert (out / "eval" / "epoch-2" / "predictions.jsonl").exists()


def test_train_dft_weights_each_token_by_its_probability(tmp_path, tiny_dir, data_file):
    """`--method dft` trains TRL's DFT: the first step's loss is the mean over the correct outputs' tokens of
    -p log p (p detached) at the initial weights (LoRA B starts at 0), not SFT's mean of -log p."""
    import torch
    from transformers import AutoModelForCausalLM

    from nlft.train.baselines import sft_dataset
    from nlft.utils.files import read_jsonl
    from nlft.utils.models import load_tokenizer

    out = tmp_path / "dft"
    assert _train(tiny_dir, data_file, out, "--method", "dft", "--max-steps", "1") == 0
    run = _check_run(out, "dft")
    assert run["manifest"]["trainer_args"]["loss_type"] == "dft"
    logged = next(x["loss"] for x in run["logs"] if "loss" in x)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    per_token = []
    for row in sft_dataset(read_jsonl(data_file), load_tokenizer(str(tiny_dir))):  # the 2 correct outputs: 1 batch
        ids = torch.tensor([row["input_ids"]])
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
        keep = torch.tensor(row["completion_mask"][1:], dtype=torch.bool)
        per_token.append(logp[keep])
    logp = torch.cat(per_token)
    dft, nll = float((-logp.exp() * logp).mean()), float(-logp.mean())
    assert logged == pytest.approx(dft, rel=1e-3)
    assert nll > 100 * dft  # a random model: p is about 1/V, so DFT's loss is about NLL / V


def test_train_sft_without_correct_outputs_says_what_to_do(tmp_path, tiny_dir, capsys):
    path = tmp_path / "wrong.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_records() if not r["correct"]))
    assert _train(tiny_dir, path, tmp_path / "o", "--method", "sft") == 2
    assert "no output is marked correct (try --sft-data reference)" in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["grpo", "auto"])
def test_train_reft_grpo(tmp_path, tiny_dir, data_file, algo, capsys):
    """ReFT with GRPO, asked for or chosen by ``auto`` on a TRL without PPO; the manifest says which and why."""
    from nlft.train.baselines import ppo_available

    if algo == "auto" and ppo_available():
        pytest.skip("auto means PPO with this TRL (test_train_reft_ppo)")
    out = tmp_path / "reft"
    assert _train(tiny_dir, data_file, out, "--method", "reft", "--reft-algo", algo, "--reft-num-generations", "2",
                  "--reft-max-new-tokens", "6") == 0
    run = _check_run(out, "reft")
    used = run["manifest"]["reft_algo"]
    assert (used["asked"], used["used"], run["config"]["reft_algo"]) == (algo, "grpo", "grpo")
    if algo == "auto":
        assert "has no PPO" in used["why"]
        assert "--reft-algo auto: GRPO, as the installed TRL has no PPO" in capsys.readouterr().err
    phases = {x.get("phase") for x in run["logs"]}
    assert phases == {"warmup", "rl"}
    assert any("rewards/reft_reward_func/mean" in x for x in run["logs"])
    assert run["manifest"]["trainer_args"]["beta"] == 0.05
    assert run["manifest"]["final"]["model"] == "warmup/model"  # relative to the run directory
    assert (out / "warmup" / "model" / "config.json").exists()


def test_train_resume_continues_from_checkpoint(tmp_path, tiny_dir, data_file):
    out = tmp_path / "run"
    assert _train(tiny_dir, data_file, out, "--method", "sft", "--save-steps", "1") == 0
    assert (out / "checkpoint-2").is_dir()
    assert main(["train", "--model", str(tiny_dir), "--data", str(data_file), "--out", str(out), "--method", "sft",
                 "--batch-size", "2", "--max-steps", "3", "--save-steps", "1", "--resume"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["global_step"] == 3
    steps = [json.loads(x)["step"] for x in (out / "log_history.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3]  # resumed at step 2, not restarted


def test_options_dataclass_matches_paper_defaults():
    opts = TrainOptions()
    assert (opts.lora_r, opts.lora_alpha, opts.lora_dropout, opts.lr, opts.batch_size, opts.lr_scheduler) == (
        16, 16, 0.05, 5e-5, 4, "cosine")
    assert (opts.reft_kl, opts.reft_warmup_epochs) == (0.05, 2.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nlft", "cut", "sft", "reft"])
def test_train_then_eval_smollm2(tmp_path, data_file, method):
    """Every method on SmolLM2-135M (a few steps), then `nlft eval --run` on two GSM8K questions."""
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"GSM8K not found in {GSM8K_DIR}")
    out = tmp_path / method
    extra = ["--reft-num-generations", "2", "--reft-max-new-tokens", "16"] if method == "reft" else []
    assert main(["train", "--method", method, "--model", "smollm2", "--data", str(data_file), "--out", str(out),
                 "--max-steps", "1", "--batch-size", "2", *extra]) == 0
    assert main(["eval", "--run", str(out), "--dataset", "gsm8k", "--data-dir", str(GSM8K_DIR), "--limit", "2",
                 "--max-new-tokens", "24", "--out", str(out / "eval"), "--no-progress"]) == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["adapter"] == str(out / "adapter")


@pytest.mark.parametrize("name", ["paper-llama3-8b.yaml", "cpu-quickstart.yaml"])
def test_shipped_configs_parse(name):

    path = REPO / "configs" / name
    opts = resolve_options(_parse(["--config", str(path), "--data", "d.jsonl", "--out", "o"]))
    assert (opts.lora_r, opts.lora_alpha, opts.lora_dropout, opts.lr, opts.batch_size) == (16, 16, 0.05, 5e-5, 4)


@pytest.mark.slow
def test_train_reft_ppo(tmp_path, tiny_dir, data_file):
    """ReFT on TRL's PPO: runs where trl <= 1.12 is installed (pip install 'nlft[reft-ppo]')."""
    from nlft.train.baselines import ppo_available

    if not ppo_available():
        pytest.skip("this TRL has no PPO (trl > 1.12)")
    out = tmp_path / "ppo"
    assert _train(tiny_dir, data_file, out, "--method", "reft", "--reft-algo", "ppo", "--reft-max-new-tokens", "6") == 0
    run = _check_run(out, "reft")
    assert any("objective/scores" in x and x.get("phase") == "rl" for x in run["logs"])
