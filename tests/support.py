"""Helpers shared by the tests (not a test module): tiny models and tokenizers, sample records, fake servers,
hand-written run directories, and running ``nlft`` in a subprocess. Tests reach them through the
fixtures of ``conftest.py`` where a fixture fits, or import them from here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = Path(os.environ.get("NLFT_GSM8K_DIR", REPO.parent / "shared" / "data" / "gsm8k"))
# The benchmarks' workload (benchmarks/workload.py) is built from GSM8K's train split: without it, skip and say why.
needs_gsm8k = pytest.mark.skipif(not (GSM8K_DIR / "train.jsonl").exists(),
                                 reason=f"GSM8K not found in {GSM8K_DIR} (set NLFT_GSM8K_DIR): the benchmarks' "
                                        "workload is built from its train split")
ITEM_RE = re.compile(r"ITEM(\d+)")
SECRET = "sk-test-THIS-KEY-MUST-NEVER-BE-WRITTEN-0123456789"


# ---- tiny models and tokenizers --------------------------------------------------------------------------

# SmolLM2's special tokens and chat layout (without its system line), on a byte-level BPE of a few hundred tokens.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' "
    "+ '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer(vocab_size: int = 512) -> Any:
    """A real fast tokenizer trained in well under a second: byte-level BPE (any text encodes; offsets work),
    SmolLM2's special tokens at ids 0-2 (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``: EOS and pad) and a
    chat template. The fast test layer needs no downloaded or packaged tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from nlft.tasks.prompts import (
        BASE_TEMPLATE,
        BRIEF_TEMPLATE,
        JUDGE_INSTRUCTION,
        JUDGE_VIEW,
        SOLVE_TEMPLATE,
        STANDARD_VIEW,
    )

    corpus = [BASE_TEMPLATE, BRIEF_TEMPLATE, SOLVE_TEMPLATE, JUDGE_INSTRUCTION, JUDGE_VIEW, STANDARD_VIEW,
              *(" ".join(str(v) for v in r.values()) for r in sample_records()),
              *(f"{a} + {b} = {a + b}\n#### {a + b}" for a in range(20) for b in range(20))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def make_tiny_model(vocab_size: int, seed: int = 0, **overrides):
    """A 2-layer, hidden-64 random Llama: a real model, built in well under a second."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        pad_token_id=2, bos_token_id=1, eos_token_id=2, **overrides,
    )
    return LlamaForCausalLM(config)


def make_tiny_sliding_model(vocab_size: int, sliding_window: int | None = 8):
    """A 1-layer, hidden-16 random Mistral with sdpa attention and ``sliding_window`` (None: full attention)."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, sliding_window=sliding_window,
                           attn_implementation="sdpa")
    return MistralForCausalLM(config)



# LoRA on the tiny model's MLP projections, for the trainer's tests.
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["gate_proj", "up_proj", "down_proj"],
            task_type="CAUSAL_LM")


def save_tiny_model(path: Path, tokenizer: Any, **overrides: Any) -> Path:
    """A tiny random Llama (:func:`make_tiny_model`) and ``tokenizer`` saved in ``path``: a folder ``--model`` loads."""
    make_tiny_model(len(tokenizer), **overrides).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def sample_records() -> list[dict]:
    """Four hand-written records: two correct outputs, two incorrect ones with judgments."""
    return [
        {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
         "reference": "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
         "output": "Tom starts with 3 apples. He buys 4 more, so 3 + 4 = 7.\n#### 7",
         "correct": True, "judgment": None},
        {"question": "A box has 6 rows of 5 eggs. How many eggs are in the box?",
         "reference": "6 * 5 = <<6*5=30>>30 eggs.\n#### 30",
         "output": "There are 6 rows with 5 eggs each: 6 * 5 = 30.\n#### 30",
         "correct": True, "judgment": None},
        {"question": "Sara reads 12 pages a day for 3 days. How many pages does she read?",
         "reference": "12 * 3 = <<12*3=36>>36 pages.\n#### 36",
         "output": "She reads 12 pages for 3 days: 12 + 3 = 15.\n#### 15",
         "correct": False,
         "judgment": "The response adds 12 + 3 = 15 instead of multiplying; 12 * 3 = 36 pages."},
        {"question": "A shirt costs $20 and is 25% off. What is the price?",
         "reference": "The discount is 20 * 0.25 = <<20*0.25=5>>5 dollars, so 20 - 5 = <<20-5=15>>15.\n#### 15",
         "output": "25% of 20 is 5. The price is 20 + 5 = 25 dollars.\n#### 25",
         "correct": False,
         "judgment": "The discount must be subtracted: 20 - 5 = 15, not 20 + 5 = 25."},
    ]



# ---- nlft in a subprocess ------------------------------------------------------------------------------


def nlft_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "nlft", *args]


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", **extra)


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_and_kill(cmd: list[str], watch: Path, *, min_lines: int, timeout: float = 120,
                 **popen: Any) -> int:
    """Start ``cmd``, SIGKILL it once ``watch`` holds ``min_lines`` lines; return the lines seen then.

    Fails the test if the process ends by itself first (the kill would then test nothing).
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout
    try:
        while count_lines(watch) < min_lines:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"the process finished before it could be killed (rc {proc.returncode}):\n{out}")
            if time.monotonic() > deadline:
                pytest.fail(f"{watch} did not reach {min_lines} lines in {timeout} s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return count_lines(watch)


def write_questions(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for k in range(n):
            fh.write(json.dumps({"id": f"q{k}", "question": f"ITEM{k}: what is {k} + 1?",
                                 "answer": f"{k} + 1 = {k + 1}\n#### {k + 1}"}) + "\n")


def assert_one_row_per_id(path: Path, ids: list[str]) -> list[dict[str, Any]]:
    from nlft.utils.files import read_jsonl

    rows = read_jsonl(path)
    counts = Counter(r["id"] for r in rows)
    assert sorted(counts) == sorted(ids), "rows lost or foreign rows present"
    assert max(counts.values()) == 1, f"duplicated rows: {[k for k, c in counts.items() if c > 1]}"
    assert path.read_bytes().endswith(b"\n")
    return rows



# ---- fake OpenAI-compatible servers --------------------------------------------------------------------


class LoopbackServer:
    """A real HTTP server on loopback whose answer to each POST is ``self.respond(path, payload, headers)``:
    ``(status, headers, body)``. Use as a context manager; ``url`` is its OpenAI-style base URL."""

    def respond(self, path: str, payload: dict[str, Any], headers: Any) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def __init__(self) -> None:
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                status, headers, body = outer.respond(self.path, payload, self.headers)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def ok_reply(text: str = "2 + 2 = 4\n#### 4", completion_tokens: int = 7) -> tuple[int, dict[str, str], bytes]:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"completion_tokens": completion_tokens}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


class CountingServer(LoopbackServer):
    """An OpenAI-compatible chat server on loopback that answers from the prompt's ``ITEM<k>`` marker.

    Every request is recorded (``requests``: the item numbers asked for, in arrival order); each
    answer waits ``delay`` seconds, so that a client can be killed with requests in flight.
    """

    def __init__(self, answer: Callable[[int], str], delay: float = 0.0) -> None:
        self.requests: list[int] = []
        self.answer, self.delay = answer, delay
        super().__init__()

    def respond(self, path: str, payload: dict[str, Any], headers: Any) -> tuple[int, dict[str, str], bytes]:
        item = int(ITEM_RE.findall(payload["messages"][-1]["content"])[-1])
        with self._lock:
            self.requests.append(item)
        time.sleep(self.delay)
        return ok_reply(self.answer(item), completion_tokens=5)


class ScriptedServer(LoopbackServer):
    """A real HTTP server whose n-th request gets the n-th scripted answer (the last one repeats).

    An answer is ``(status, headers, body)`` or ``("sleep", seconds, answer)``.
    """

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        super().__init__()

    def respond(self, path: str, payload: dict[str, Any], headers: Any) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            index = len(self.requests)
            self.requests.append({"path": path, "payload": payload, "authorization": headers.get("Authorization")})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        answer = self.script[min(index, len(self.script) - 1)]
        if answer[0] == "sleep":
            time.sleep(answer[1])
            answer = answer[2]
        # The request leaves the count before its answer goes out: once the client can read the
        # answer it may send its next request, and that one must not overlap this one here.
        with self._lock:
            self.in_flight -= 1
        return answer


# ---- run directories -------------------------------------------------------------------------------------


def write_run(run: Path, *, losses=(2.0, 1.5, 1.2, 0.9), accuracies=(0.25, 0.5), method="nlft",
              with_manifest=True, with_metrics=True, steps_per_epoch=2) -> Path:
    """A run directory as the trainer leaves it: per-step logs, per-epoch evaluations, manifest, metrics."""
    run.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, loss in enumerate(losses):
        step = i + 1
        rows.append({"step": step, "epoch": step / steps_per_epoch, "loss": loss, "learning_rate": 5e-5,
                     "nlft/mean_scale": 0.5 + 0.1 * i, "nlft/saliency_share": 0.1 * i,
                     "nlft/sub_saliency_share": 0.05, "nlft/erroneous_share": 0.02})
    rows.append({"step": len(losses), "epoch": len(losses) / steps_per_epoch, "train_runtime": 33.0,
                 "train_loss": sum(losses) / len(losses)})
    (run / "log_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if accuracies:
        evals = [{"epoch": float(e + 1), "accuracy_strict": a, "accuracy_flexible": a + 0.05, "n": 20}
                 for e, a in enumerate(accuracies)]
        (run / "eval_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    if with_manifest:
        manifest = {"method": method, "train_wall_time_s": 125.0, "epochs": [
            {"epoch": 1.0, "wall_time_s": 60.0, "peak_memory_bytes": 3 * 2**30},
            {"epoch": 2.0, "wall_time_s": 65.0, "peak_memory_bytes": 2 * 2**30}]}
        (run / "manifest.json").write_text(json.dumps(manifest))
    if with_metrics:
        (run / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.55, "n": 20}))
    return run


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR); also checks the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


