"""The bad-input catalogue: each bad input gives a clear message naming file / line / field, or is
handled (retry with backoff, a documented fallback), never a stack trace or a NaN."""

from __future__ import annotations

import copy
import json
import math
import subprocess

import pytest
import torch
from peft import LoraConfig
from support import CountingServer, env, make_tiny_model, nlft_cmd, sample_records

from nlft import NLFTConfig, NLFTTrainer
from nlft.method.logps import pad_views, view_logps
from nlft.method.loss import nlft_loss
from nlft.method.scales import batch_token_scales
from nlft.tasks.prompts import BASE_TEMPLATE
from nlft.tasks.sources import load_questions
from nlft.train.views import validate_records
from nlft.utils.files import DataError, read_jsonl

LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["gate_proj", "up_proj", "down_proj"],
            task_type="CAUSAL_LM")


def make_args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", use_cpu=True,
                disable_tqdm=True, seed=0, max_steps=1, per_device_train_batch_size=4)
    base.update(kw)
    return NLFTConfig(**base)


# ---- files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (b'{"a": 1}\n{"a": 2,\n', r"line 2: malformed JSON"),
    (b'{"a": 1}\n\n[1, 2]\n', r"line 3: expected a JSON object, got list"),
    (b'{"a": 1}\n{"a": "\xff"}\n', r"line 2: not valid UTF-8"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_jsonl(path)
    assert str(info.value).startswith(f"{path}, ")


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"correct": "yes"}, "correct", "expected true or false, got 'yes'"),
    ({"question": 7}, "question", "expected a string, got int"),
    ({"output": " \n\t"}, "output", "empty or whitespace-only text"),
    ({"question": ""}, "question", "empty or whitespace-only text"),
    ({"judgment": None}, "judgment", "an incorrect output needs a judgment"),
    ({"judgment": ["x"]}, "judgment", "expected a string or null, got list"),
])
def test_record_errors_name_row_and_field(change, field, message):
    rows = sample_records()
    rows[3] = {**rows[3], **change}
    with pytest.raises(DataError) as info:
        validate_records(rows, source="data.jsonl")
    assert str(info.value) == f"data.jsonl, line 4, field {field!r}: {message}" or message in str(info.value)
    assert str(info.value).startswith(f"data.jsonl, line 4, field {field!r}: ")


def test_missing_field_is_named():
    rows = sample_records()
    del rows[1]["reference"]
    with pytest.raises(DataError, match=r"^data.jsonl, line 2, field 'reference': missing field$"):
        validate_records(rows, source="data.jsonl")


@pytest.mark.parametrize(("answer", "message"), [
    ("seven", "is neither a number nor a solution"),
    ("so the answer is\n#### many", "is not followed by a number"),
    ("", "missing or empty answer"),
])
def test_non_numeric_gold_answer_is_named(tmp_path, answer, message):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "q1?", "answer": "#### 1"}) + "\n"
                    + json.dumps({"question": "q2?", "answer": answer}) + "\n")
    with pytest.raises(DataError, match=message) as info:
        load_questions(str(path))
    assert str(info.value).startswith(f"{path}, line 2, field 'answer': ")


# ---- trainer -----------------------------------------------------------------------------------------


def test_prompt_longer_than_max_length_errors_or_truncates(tmp_path, tokenizer):
    """truncation='error' names the row and the field; 'response' cuts outputs and trains."""
    rows = sample_records()
    rows[2] = {**rows[2], "question": rows[2]["question"] + " Think of this." * 40}
    # the longest prompt is X_judge (question + judgment): the message names it
    with pytest.raises(DataError, match=r"^train_dataset, line 3, field 'judgment': prompt \(\d+ tokens\)"):
        NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, max_length=200, base_template=BASE_TEMPLATE),
                    train_dataset=rows, processing_class=tokenizer)
    # a limit every prompt fits under, with room for a few output tokens, that cuts the longest rows
    from nlft.train.views import tokenize_record

    views = [tokenize_record(r, tokenizer, base_template=BASE_TEMPLATE) for r in sample_records()]
    prompts = [max(len(v[k]) for k in ("base_prompt_ids", "std_prompt_ids", "judge_prompt_ids")) for v in views]
    limit = max(prompts) + 3
    assert limit < max(n + len(v["response_ids"]) for n, v in zip(prompts, views, strict=True))
    trainer = NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, max_length=limit, truncation="response",
                                                                     base_template=BASE_TEMPLATE),
                          train_dataset=sample_records(), processing_class=tokenizer, peft_config=LoraConfig(**LORA))
    lengths = [max(len(r[k]) for k in ("base_prompt_ids", "std_prompt_ids", "judge_prompt_ids"))
               + len(r["response_ids"]) for r in trainer.train_dataset]
    assert max(lengths) == limit
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])


def test_tokenizer_without_chat_template_and_pad_token(tmp_path, tokenizer):
    """No chat template: plain prompts (use_chat_template=None) or a clear error (True). No pad token:
    the EOS token pads. Training runs with a finite loss."""
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    bare.pad_token = None
    assert bare.pad_token_id is None
    model = make_tiny_model(len(tokenizer))
    model.config.pad_token_id = None
    trainer = NLFTTrainer(model, make_args(tmp_path), train_dataset=sample_records(), processing_class=bare,
                          peft_config=LoraConfig(**LORA))
    assert bare.pad_token_id == bare.eos_token_id
    first = trainer.train_dataset[0]["base_prompt_ids"]
    assert "<|im_start|>" not in bare.decode(first)
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    with pytest.raises(ValueError, match="has no chat template; set use_chat_template to false"):
        NLFTTrainer(make_tiny_model(len(tokenizer)), make_args(tmp_path, use_chat_template=True),
                    train_dataset=sample_records(), processing_class=bare)


def test_probabilities_of_exactly_zero_and_one():
    """P in {0, 1} in every view: scales and loss finite, gradient finite (hand-checked cases).

    correct row: p_std = [1, 0] -> scales [2 (saliency: 1 + 1^5), 0 (irrelevant: 0^0.6)]
    incorrect row: p_base = [1, 0], p_judge = [1, 1], p_std = [0, 0] -> r1 = [1, 1e12]: token 1 is
    erroneous with scale 2 sigmoid(1e12 - 1.5) = 2, trained with -log(1 - 0) = 0; token 0 gets 0.
    """
    p_base = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    p_std = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    p_judge = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    ts = batch_token_scales(p_base, p_std, p_judge, torch.tensor([True, False]), mask)
    torch.testing.assert_close(ts.scales, torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    assert ts.unlikelihood.tolist() == [[False, False], [False, True]]
    logps = p_base.log().requires_grad_(True)
    loss = nlft_loss(logps, ts.scales, ts.unlikelihood, mask)
    loss.backward()
    assert loss.item() == 0.0  # -2 log 1 + 0 + 0 - 2 log(1 - 0) = 0
    assert torch.isfinite(logps.grad).all()


def test_all_padding_batch_through_the_model(tokenizer):
    """A batch whose responses are all padding: log-probs 0, loss 0, no NaN."""
    model = make_tiny_model(len(tokenizer))
    batch = pad_views([[5, 6, 7], [8]], [[9, 10], [11]], tokenizer.pad_token_id)
    labels = torch.full_like(batch["labels"], -100)
    logps, _ = view_logps(model, batch["input_ids"], batch["attention_mask"], labels)
    assert (logps == 0).all()
    mask = labels != -100
    ts = batch_token_scales(logps.exp(), logps.exp(), logps.exp(), torch.tensor([True, False]), mask)
    loss = nlft_loss(logps, ts.scales, ts.unlikelihood, mask)
    assert loss.item() == 0.0


# ---- judge server at the command line ---------------------------------------------------------------------


def _outputs_file(tmp_path, n=2):
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{k}", "question": f"ITEM{k}: 1 + {k}?", "reference": f"#### {k + 1}",
                                        "gold": str(k + 1), "output": "#### 0"}) + "\n" for k in range(n)))
    return path


def _judge(tmp_path, url, *extra):
    return nlft_cmd("judge", "--input", str(_outputs_file(tmp_path)), "--judge", "openai", "--base-url", url,
                    "--model-name", "j", "--out", str(tmp_path / "out"), "--no-progress", *extra)


def test_judge_server_failing_for_good_is_a_clear_error(tmp_path):
    """A server that always answers 500: retried with backoff, then a one-line error, exit 2."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    hits = []

    class Failing(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            hits.append(1)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(500)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"oops")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        proc = subprocess.run(_judge(tmp_path, url, "--max-retries", "2", "--max-concurrency", "1"), env=env(),
                              capture_output=True, text=True, timeout=120)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 2
    assert "nlft judge: error:" in proc.stderr and "gave up after 3 attempts" in proc.stderr
    assert "HTTP 500: oops" in proc.stderr and "Traceback" not in proc.stderr
    assert len(hits) == 6  # the first chunk's two rows: 1 try + 2 retries each, then it stops
    assert not read_jsonl(tmp_path / "out" / "nlft.jsonl")


def test_bad_input_file_at_the_command_line(tmp_path):
    path = tmp_path / "outputs.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "q", "reference": "#### 1", "gold": "1", "output": "x"}) + "\n"
                    + json.dumps({"id": "b", "question": "q", "reference": "#### 1", "gold": 1, "output": "x"}) + "\n")
    proc = subprocess.run(nlft_cmd("judge", "--input", str(path), "--out", str(tmp_path / "o"), "--no-progress"),
                          env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"nlft judge: error: {path}, line 2, field 'gold': " in proc.stderr


def test_counting_server_sanity():
    """The helper server used above and in the resume tests answers and counts."""
    import httpx

    with CountingServer(lambda k: f"answer {k}") as server:
        r = httpx.post(server.url + "/chat/completions", json={"messages": [{"role": "user", "content": "ITEM4"}]})
    assert r.json()["choices"][0]["message"]["content"] == "answer 4"
    assert server.requests == [4]
