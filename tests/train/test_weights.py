"""`nlft weights`: static per-token NLFT weights, aligned with the tokens, resumable, and measurable on a server."""

from __future__ import annotations

import json

import pytest
import torch
from support import LoopbackServer, env, make_tiny_model, nlft_cmd, run_and_kill, sample_records

from nlft.cli import main
from nlft.train.views import response_ids_and_words, tokenize_record
from nlft.train.weights import meta_path, read_weights, weights_config, write_weights
from nlft.utils.files import DataError

# r0 = 1 and p0_incorrect = 0 make a random model flag erroneous tokens, so unlikelihood rows are exercised.
FLAGGING = dict(r0=1.0, p0_incorrect=0.0)


def write_records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_every_row_aligns_with_its_response_tokens(tmp_path, tokenizer):
    records = sample_records()
    config = weights_config(**FLAGGING)
    result = write_weights(records, tmp_path / "w.jsonl", tokenizer=tokenizer, model=make_tiny_model(len(tokenizer)),
                           model_name="tiny", config=config, batch_size=3, progress=False)
    meta, rows = read_weights(result.path)
    assert meta["rows"] == len(records) and meta["model"] == "tiny"
    assert meta["view_probs"] == "cached" and meta["error_reference"] == "initial"
    assert meta["settings"]["r0"] == 1.0
    assert [r["row"] for r in rows] == list(range(len(records)))
    for record, row in zip(records, rows):
        ids, _ = response_ids_and_words(tokenizer, record["output"])
        assert row["response_ids"] == ids and row["response_ids"][-1] == tokenizer.eos_token_id
        base = tokenize_record(record, tokenizer, base_template=config.base_template,
                               use_chat_template=config.use_chat_template)["base_prompt_ids"]
        assert row["prompt_ids"] == base
        for key in ("tokens", "classes", "scales", "loss", "likelihood_weights"):
            assert len(row[key]) == len(ids), key
        assert "".join(row["tokens"][:-1]) == record["output"]  # the pieces are the output's text, then EOS
        assert row["correct"] == record["correct"]
        if row["correct"]:
            assert set(row["classes"]) <= {"saliency", "sub_saliency", "irrelevant"}
            assert set(row["loss"]) == {"likelihood"} and row["likelihood_weights"] == row["scales"]
            assert all(s > 0 for s in row["scales"])  # (P_std / p0)^c3 > 0 on every token
        else:
            assert set(row["classes"]) <= {"erroneous", "near_error", "irrelevant"}
            for cls, loss, scale, lw in zip(row["classes"], row["loss"], row["scales"], row["likelihood_weights"]):
                assert (loss == "unlikelihood") == (cls == "erroneous")
                assert lw == (0.0 if loss == "unlikelihood" else scale)
                if cls != "erroneous":  # the paper: irrelevant and near-error tokens of incorrect outputs get 0
                    assert scale == 0.0
    assert any("unlikelihood" in r["loss"] for r in rows)


def test_the_robust_preset_trains_unflagged_incorrect_tokens_with_likelihood(tmp_path, tokenizer):
    config = weights_config("robust", **FLAGGING)
    result = write_weights(sample_records(), tmp_path / "w.jsonl", tokenizer=tokenizer, model_name="tiny",
                           model=make_tiny_model(len(tokenizer)), config=config, progress=False)
    wrong = [r for r in result.rows if not r["correct"] and any(r["scales"])]  # not excluded as entirely wrong
    assert wrong
    for row in wrong:
        for cls, scale, loss in zip(row["classes"], row["scales"], row["loss"]):
            if cls == "irrelevant":
                assert scale == 1.0 and loss == "likelihood"


def test_a_kl_anchor_has_no_static_weight():
    with pytest.raises(ValueError, match="kl_coef"):
        weights_config(kl_coef=0.1)


def test_cli_resumes_after_a_kill_and_refuses_other_settings(tmp_path, tiny_dir, capsys):
    data = write_records(tmp_path / "nlft.jsonl", sample_records() * 40)
    whole, killed = tmp_path / "whole.jsonl", tmp_path / "killed.jsonl"
    args = ["--data", str(data), "--model", str(tiny_dir), "--batch-size", "1", "--r0", "1", "--p0-incorrect", "0",
            "--no-progress"]
    assert main(["weights", *args, "--out", str(whole)]) == 0
    assert "160 rows" in capsys.readouterr().err
    seen = run_and_kill(nlft_cmd("weights", *args, "--out", str(killed)), killed, min_lines=2, env=env())
    assert seen < 160
    assert main(["weights", *args, "--out", str(killed)]) == 0
    assert killed.read_text() == whole.read_text()
    assert json.loads(meta_path(killed).read_text()) == json.loads(meta_path(whole).read_text())
    assert main(["weights", *args, "--r0", "2", "--out", str(killed)]) == 2
    assert "r0" in capsys.readouterr().err


def test_an_unfinished_file_is_not_read(tmp_path, tokenizer):
    result = write_weights(sample_records(), tmp_path / "w.jsonl", tokenizer=tokenizer, model_name="tiny",
                           model=make_tiny_model(len(tokenizer)), progress=False)
    lines = result.path.read_text().splitlines(keepends=True)
    result.path.write_text("".join(lines[:2]))
    with pytest.raises(DataError, match="2 of 4 rows"):
        read_weights(result.path)


class ModelServer(LoopbackServer):
    """An OpenAI-compatible ``/completions`` server on loopback answering with a real model's prompt log-probs,
    in the documented shape of ``echo`` + ``logprobs`` (``shape="echo"``) or of vLLM's ``prompt_logprobs``."""

    def __init__(self, model, shape: str) -> None:
        self.model, self.shape = model.eval(), shape
        self.paths: list[str] = []
        super().__init__()

    def respond(self, path, payload, headers):
        # the request the client sends for each documented shape
        if self.shape == "echo":
            assert payload["echo"] is True and payload["logprobs"] >= 0 and "prompt_logprobs" not in payload
        else:
            assert payload["prompt_logprobs"] >= 0 and not payload.get("echo")
        ids = payload["prompt"]
        with self._lock, torch.no_grad():
            self.paths.append(path)
            logits = self.model(torch.tensor([ids])).logits[0].float()
        logps = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()
        if self.shape == "echo":
            choice = {"text": "", "index": 0, "finish_reason": "length",
                      "logprobs": {"tokens": [str(t) for t in ids] + ["x"], "token_logprobs": [None, *logps, -0.5],
                                   "top_logprobs": None, "text_offset": list(range(len(ids) + 1))}}
        else:
            choice = {"text": "", "index": 0, "finish_reason": "length", "logprobs": None,
                      "prompt_logprobs": [None, *({str(t): {"logprob": lp, "rank": 1, "decoded_token": "?"}}
                                                  for t, lp in zip(ids[1:], logps))]}
        body = {"id": "cmpl-1", "object": "text_completion", "model": payload["model"], "choices": [choice]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.mark.parametrize("shape", ["echo", "vllm"])
def test_views_measured_on_a_server_give_the_local_weights(tmp_path, tokenizer, tiny_dir, shape, capsys):
    from nlft.data.generation import OpenAIChatClient
    from nlft.train.weights import server_measure

    records = sample_records()
    model = make_tiny_model(len(tokenizer))
    config = weights_config(phrase_rule="word", **FLAGGING)
    local = write_weights(records, tmp_path / "local.jsonl", tokenizer=tokenizer, model=model, model_name="tiny",
                          config=config, progress=False)
    with ModelServer(model, shape) as server, OpenAIChatClient(server.url, "tiny", max_retries=0) as client:
        remote = write_weights(records, tmp_path / "remote.jsonl", tokenizer=tokenizer, model_name="tiny",
                               config=weights_config(phrase_rule="word", **FLAGGING),
                               measure=server_measure(client, api=shape), backend="openai", progress=False)
    assert set(server.paths) == {"/v1/completions"}
    assert len(server.paths) == 2 * 4 + 2  # X_base and X_standard of every row, X_judge of the two incorrect ones
    for a, b in zip(local.rows, remote.rows):
        assert a["response_ids"] == b["response_ids"] and a["classes"] == b["classes"] and a["loss"] == b["loss"]
        assert b["scales"] == pytest.approx(a["scales"], rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="phrase_rule='cosine'"):
        write_weights(records, tmp_path / "x.jsonl", tokenizer=tokenizer, model_name="tiny", config=weights_config(),
                      measure=server_measure(None), backend="openai")
    # the command line: the server measures, the model here is never loaded (only its tokenizer is read)
    data = write_records(tmp_path / "nlft.jsonl", records)
    with ModelServer(model, shape) as server:
        assert main(["weights", "--data", str(data), "--model", str(tiny_dir), "--backend", "openai", "--base-url",
                     server.url, "--logprobs-api", shape, "--phrase-rule", "word", "--no-progress", "--out",
                     str(tmp_path / "cli.jsonl")]) == 0
    assert len(read_weights(tmp_path / "cli.jsonl")[1]) == 4


def test_nlft_train_from_weights(tmp_path, tiny_dir, capsys):
    data = write_records(tmp_path / "nlft.jsonl", sample_records())
    weights, run = tmp_path / "w.jsonl", tmp_path / "run"
    assert main(["weights", "--data", str(data), "--model", str(tiny_dir), "--preset", "robust", "--r0", "1",
                 "--p0-incorrect", "0", "--no-progress", "--out", str(weights)]) == 0
    assert main(["train", "--from-weights", str(weights), "--model", str(tiny_dir), "--out", str(run), "--epochs", "1",
                 "--batch-size", "2", "--lr", "1e-3", "--no-progress"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["weights"]["error_reference"] == "initial"
    assert manifest["weights"]["settings"]["irrelevant_incorrect"] == "likelihood"
    assert manifest["data"]["rows"] == 4 and manifest["data"]["incorrect"] == 2
    assert "drift_monitor" in manifest
    assert (run / "adapter" / "adapter_config.json").exists()
    logged = [json.loads(line) for line in (run / "log_history.jsonl").read_text().splitlines()]
    steps = [h for h in logged if "loss" in h and "nlft/nll" in h]
    assert len(steps) == 2 and all(h["nlft/nll"] > 0 and 0 < h["nlft/mean_scale"] < 2 for h in steps)
    capsys.readouterr()
    assert main(["train", "--method", "sft", "--from-weights", str(weights), "--model", str(tiny_dir), "--out",
                 str(tmp_path / "sft")]) == 2
    assert "--method nlft" in capsys.readouterr().err
