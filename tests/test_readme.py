"""README.md's example commands, run as written on a tiny random model with short settings added.

Every ``nlft ...`` line of the README's ``bash`` blocks runs in one temporary folder, in an order where
each command's inputs exist (``nlft prepare ... --out runs/p`` before ``nlft train --data
runs/p/nlft.jsonl``). ``--model smollm2`` becomes the tiny model and flags that shorten a run are
appended (argparse keeps the last value); ``path/to/gsm8k`` is the GSM8K folder of the tests and the
OpenAI-compatible server is a loopback one. Left out: the study (hours) and the install lines.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from support import GSM8K_DIR, REPO, ScriptedServer, ok_reply, sample_records

from nlft.cli import main

README = REPO / "README.md"
SKIPPED = ("study",)
# Flags appended to each command: shorter, same code paths.
SHORT = {
    # sampled, like prepare below: a random model's greedy answers are empty
    "quickstart": ["--train-size", "4", "--eval-size", "2", "--epochs", "1", "--max-new-tokens", "8",
                   "--temperature", "1", "--batch-size", "4", "--saliency-limit", "4", "--no-progress"],
    "train": ["--max-steps", "1", "--batch-size", "2", "--reft-num-generations", "2", "--reft-max-new-tokens", "4",
              "--sdft-max-new-tokens", "4", "--eval-limit", "4", "--eval-max-new-tokens", "8"],
    "eval": ["--limit", "4", "--max-new-tokens", "4", "--batch-size", "4", "--no-progress"],
    # sampled: greedy decoding of a random model repeats the prompt's last token, a newline ("empty" outputs)
    "prepare": ["--limit", "4", "--max-new-tokens", "8", "--batch-size", "4", "--temperature", "1", "--no-progress"],
    "saliency": [],
    "compare": [],
    "weights": ["--limit", "4", "--no-progress"],
}
# What a command needs to exist before it runs.
INPUT_FLAGS = ("--data", "--dataset", "--adapter", "--run", "--input", "--from-weights")


def readme_commands(text: str) -> list[str]:
    """The ``nlft`` command lines of the README's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "nlft":
                commands.append(shlex.join(words))
    return commands


def readme_python(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _inputs(words: list[str]) -> list[str]:
    found = [words[i + 1] for i, w in enumerate(words[:-1]) if w in INPUT_FLAGS]
    if words[1] == "compare":
        found += [w for w in words[2:] if not w.startswith("-") and w not in found and "." not in w]
    return [f for f in found if "/" in f]


def test_readme_lists_the_commands_it_should():
    commands = readme_commands(README.read_text())
    assert "nlft quickstart" in commands
    assert any(c.startswith("nlft eval --run runs/nlft") for c in commands)
    assert {shlex.split(c)[1] for c in commands} >= {"quickstart", "saliency", "train", "eval", "compare", "prepare"}


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path, tiny_dir, tokenizer, monkeypatch, capsys):
    if not (GSM8K_DIR / "train.jsonl").exists():
        pytest.skip(f"GSM8K not found in {GSM8K_DIR} (set NLFT_GSM8K_DIR)")
    monkeypatch.chdir(tmp_path)
    text = README.read_text()
    pending = [c for c in readme_commands(text) if shlex.split(c)[1] not in SKIPPED]
    done = []
    with ScriptedServer([ok_reply("Half of 48 is 24. 48 + 24 = 72.\n#### 72")]) as server:
        while pending:
            ready = [c for c in pending if all(Path(p).exists() for p in _inputs(shlex.split(c)))]
            assert ready, f"these README commands read what no other command writes: {pending}"
            command = ready[0]
            pending.remove(command)
            words = shlex.split(command.replace("path/to/gsm8k", str(GSM8K_DIR))
                                .replace("http://127.0.0.1:8000/v1", server.url))
            words = [str(tiny_dir) if i and words[i - 1] == "--model" and w == "smollm2" else w
                     for i, w in enumerate(words)]
            sub = words[1]
            extra = SHORT.get(sub, [])
            if sub == "quickstart" or (sub == "train" and "--model" not in words):
                extra = ["--model", str(tiny_dir), *extra]
            if sub == "prepare" and "--backend" not in words and "--model" not in words:
                extra = ["--model", str(tiny_dir), *extra]
            code = main([*words[1:], *extra])
            assert code == 0, (command, capsys.readouterr().err[-2000:])
            done.append(command)
    assert len(done) >= 14
    assert (tmp_path / "nlft-quickstart" / "run" / "adapter" / "README.md").exists()
    assert (tmp_path / "runs" / "nlft" / "eval" / "metrics.json").exists()
    assert (tmp_path / "compare.png").exists() and (tmp_path / "saliency.html").exists()

    # The library example, with the tiny model and one step.
    (code,) = [c for c in readme_python(text) if "NLFTTrainer" in c]
    code = (code.replace('"smollm2"', repr(str(tiny_dir))).replace("num_train_epochs=3", "max_steps=1")
            .replace('"runs/nlft"', repr(str(tmp_path / "library"))))
    scope = {"records": [dict(r, id=f"r{i}") for i, r in enumerate(sample_records())]}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["trainer"].state.global_step == 1

    # The TRL example, on the weights file the README's `nlft weights` line wrote.
    (code,) = [c for c in readme_python(text) if "NLFTWeightsTrainer" in c]
    code = code.replace('"HuggingFaceTB/SmolLM2-135M-Instruct"', repr(str(tiny_dir)))
    code = code.replace('train_dataset="runs/w/weights.jsonl"', 'train_dataset="runs/w/weights.jsonl", args=args')
    from trl import SFTConfig

    scope = {"args": SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=1, use_cpu=True, bf16=False,
                               report_to="none", save_strategy="no")}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["trainer"].state.global_step == 1
