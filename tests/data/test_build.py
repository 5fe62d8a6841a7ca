"""The resumable runner, stored run arguments, and the generate/judge/prepare commands end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import GSM8K_DIR, REPO

from nlft.utils.files import DataError
from nlft.utils.resume import check_run_args, run_resumable

needs_gsm8k = pytest.mark.skipif(not (GSM8K_DIR / "train.jsonl").exists(),
                                 reason=f"GSM8K not found in {GSM8K_DIR} (set NLFT_GSM8K_DIR)")
REFERENCE = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
             "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")


def _env() -> dict[str, str]:
    # One thread: the runs only need to be deterministic, and a busy CPU slows threaded matmuls a lot.
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")


def _nlft(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = _env()
    return subprocess.run([sys.executable, "-m", "nlft", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- run_resumable -----------------------------------------------------------------------------------


def _composition_process(calls: list[list[str]]) -> Any:
    """Rows that record which chunk produced them: a changed chunk composition would show."""

    def process(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [it["id"] for it in chunk]
        calls.append(ids)
        return [{"id": it["id"], "chunk": ids} for it in chunk]

    return process


ITEMS = [{"id": f"q{i}"} for i in range(7)]


def test_resumable_fresh_run_writes_all_rows_in_order(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    out = tmp_path / "o.jsonl"
    rows = run_resumable(ITEMS, _composition_process(calls), out, chunk_size=3, progress=False)
    assert calls == [["q0", "q1", "q2"], ["q3", "q4", "q5"], ["q6"]]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(7)]
    assert _lines(out) == rows
    # A rerun finds everything done and calls nothing.
    again: list[list[str]] = []
    assert run_resumable(ITEMS, _composition_process(again), out, chunk_size=3, progress=False) == rows
    assert again == []


def test_resumable_after_a_crash_mid_chunk(tmp_path: Path) -> None:
    full = tmp_path / "full.jsonl"
    run_resumable(ITEMS, _composition_process([]), full, chunk_size=3, progress=False)
    lines = full.read_text().splitlines(keepends=True)
    # The crash: chunk 1 written, chunk 2 cut after one row and half of the next line.
    crashed = tmp_path / "crashed.jsonl"
    crashed.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    calls: list[list[str]] = []
    run_resumable(ITEMS, _composition_process(calls), crashed, chunk_size=3, progress=False)
    # The partly written chunk is recomputed whole (same members), the finished one is not.
    assert calls == [["q3", "q4", "q5"], ["q6"]]
    assert crashed.read_bytes() == full.read_bytes()


def test_resumable_refuses_foreign_or_duplicate_rows(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "q0"}\n{"id": "other"}\n')
    with pytest.raises(DataError, match=r"line 2, field 'id': row id='other' is not part of this run"):
        run_resumable(ITEMS, _composition_process([]), out, chunk_size=3, progress=False)
    out.write_text('{"id": "q0"}\n{"id": "q0"}\n')
    with pytest.raises(DataError, match="duplicate id 'q0'"):
        run_resumable(ITEMS, _composition_process([]), out, chunk_size=3, progress=False)


def test_check_run_args(tmp_path: Path) -> None:
    check_run_args(tmp_path, {"limit": 5, "seed": 0})
    check_run_args(tmp_path, {"limit": 5, "seed": 0})  # same arguments: resume
    with pytest.raises(DataError, match=r"different arguments \(limit: 5 -> 6\)"):
        check_run_args(tmp_path, {"limit": 6, "seed": 0})
    assert json.loads((tmp_path / "args.json").read_text()) == {"limit": 5, "seed": 0}


# -- nlft judge (calculator, no model) -----------------------------------------------------------------


def _outputs_file(path: Path) -> Path:
    rows = [
        {"id": "a", "question": "Natalia ...", "reference": REFERENCE, "gold": "72",
         "output": "48/2 = <<48/2=24>>24 and 48+24 = <<48+24=72>>72\n#### 72", "output_tokens": 20},
        {"id": "b", "question": "Natalia ...", "reference": REFERENCE, "gold": "72",
         "output": "48/2 = <<48/2=24>>24 and 48+24 = <<48+24=70>>70\n#### 70", "output_tokens": 21},
        {"id": "c", "question": "Natalia ...", "reference": REFERENCE, "gold": "72",
         "output": "She sold about seventy", "output_tokens": 4},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_judge_cli_calculator(tmp_path: Path) -> None:
    inp = _outputs_file(tmp_path / "outputs.jsonl")
    out = tmp_path / "judged"
    proc = _nlft("judge", "--input", str(inp), "--out", str(out), "--judge", "calculator", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"NLFT data: {out / 'nlft.jsonl'}" in proc.stdout
    assert "correct: 1  incorrect: 2  judged: 2" in proc.stdout
    records = _lines(out / "nlft.jsonl")
    assert [(r["id"], r["correct"], r["extracted"]) for r in records] == [
        ("a", True, "72"), ("b", False, "70"), ("c", False, None)]
    assert records[0]["judgment"] is None
    assert records[1]["judgment"].startswith("Step 2 computes 48+24 = 70, but 48+24 = 72.")
    assert records[2]["judgment"].startswith("The response states no final answer")  # flexible: no '####' talk
    for r in records:
        assert set(r) >= {"id", "question", "reference", "output", "correct", "judgment", "gold", "extracted",
                          "provenance"}
        assert r["provenance"]["judge"] == {"kind": "calculator", "grading": "flexible"}
    assert "grading: flexible: the '####' line, else the phrasings" in proc.stdout
    assert "an answer was read from 2 of 3 outputs" in proc.stdout and "WARNING" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in ("rows", "correct", "incorrect", "judged", "mean_output_tokens", "grading",
                                    "answered")} == {
        "rows": 3, "correct": 1, "incorrect": 2, "judged": 2, "mean_output_tokens": 15.0, "grading": "flexible",
        "answered": 2}
    # Rerun with a different grading mode into the same directory: refused, nothing mixed.
    proc = _nlft("judge", "--input", str(inp), "--out", str(out), "--grading", "strict", "--no-progress")
    assert proc.returncode == 2
    assert "different arguments (grading: 'flexible' -> 'strict')" in proc.stderr
    assert len(_lines(out / "nlft.jsonl")) == 3


def test_judge_cli_malformed_row_names_file_line_field(tmp_path: Path) -> None:
    inp = tmp_path / "outputs.jsonl"
    good = {"id": "a", "question": "q", "reference": "#### 1", "gold": "1", "output": "#### 1"}
    bad = {"id": "b", "question": "q", "reference": "#### 1"}  # gold comes from the reference; no output
    inp.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    proc = _nlft("judge", "--input", str(inp), "--out", str(tmp_path / "o"), "--no-progress")
    assert proc.returncode == 2
    assert f"{inp}, line 3, field 'output'" in proc.stderr
    inp.write_text(json.dumps(dict(good, id="c", reference="no final answer", gold=None)) + "\n")
    proc = _nlft("judge", "--input", str(inp), "--out", str(tmp_path / "o2"), "--no-progress")
    assert proc.returncode == 2
    assert f"{inp}, line 1, field 'gold'" in proc.stderr
    del good["gold"]
    inp.write_text(json.dumps(dict(good, reference="no final answer")) + "\n")
    proc = _nlft("judge", "--input", str(inp), "--out", str(tmp_path / "o3"), "--no-progress")
    assert proc.returncode == 2
    assert f"{inp}, line 1, field 'reference'" in proc.stderr


def test_prepare_malformed_dataset_row(tmp_path: Path) -> None:
    data = tmp_path / "qs.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "2+2?", "answer": "four"}\n')
    proc = _nlft("prepare", "--dataset", str(data), "--out", str(tmp_path / "o"), "--no-progress")
    assert proc.returncode == 2
    assert f"{data}, line 2, field 'answer'" in proc.stderr


# -- real model (SmolLM2-135M) -----------------------------------------------------------------------


@pytest.mark.slow
def test_hf_judge_writes_judgments(tmp_path: Path) -> None:
    from nlft.data.build import BackendSpec, JudgeSpec, judge_outputs

    rows = _lines(_outputs_file(tmp_path / "outputs.jsonl"))
    judge = JudgeSpec(kind="hf", backend=BackendSpec(model="smollm2"), max_new_tokens=24)
    records = judge_outputs(rows, tmp_path / "nlft.jsonl", judge=judge, progress=False)
    assert [r["correct"] for r in records] == [True, False, False]
    assert records[0]["judgment"] is None
    for r in records[1:]:
        assert r["judgment"].strip()
        assert r["provenance"]["judge"]["kind"] == "hf"
        assert r["provenance"]["judge"]["model"] == "smollm2"


@needs_gsm8k
@pytest.mark.slow
def test_prepare_killed_and_resumed_matches_uninterrupted(tmp_path: Path) -> None:
    """SIGKILL a real `nlft prepare` after its first rows, rerun it: the files equal an uninterrupted run."""
    # A short prompt keeps this test fast; the default few-shot prompt is exercised by the same code.
    template = tmp_path / "short.txt"
    template.write_text("Solve step by step and end with '#### <number>'.\nQuestion: {question}\nAnswer:")
    args = ["prepare", "--dataset", "gsm8k", "--data-dir", str(GSM8K_DIR), "--split", "train", "--limit", "6",
            "--batch-size", "2", "--max-new-tokens", "24", "--judge", "calculator", "--no-progress",
            "--template", str(template)]
    whole = tmp_path / "whole"
    proc = _nlft(*args, "--out", str(whole))
    assert proc.returncode == 0, proc.stderr

    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-m", "nlft", *args, "--out", str(killed)], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outputs = killed / "outputs.jsonl"
    deadline = time.monotonic() + 300
    while child.poll() is None and time.monotonic() < deadline:
        if outputs.exists() and outputs.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the run finished before it could be interrupted"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    partial = outputs.read_text().count("\n")
    assert 2 <= partial < 6
    assert not (killed / "nlft.jsonl").exists()

    proc = _nlft(*args, "--out", str(killed))
    assert proc.returncode == 0, proc.stderr
    assert (killed / "outputs.jsonl").read_bytes() == (whole / "outputs.jsonl").read_bytes()
    assert (killed / "nlft.jsonl").read_bytes() == (whole / "nlft.jsonl").read_bytes()
    records = _lines(whole / "nlft.jsonl")
    assert [r["id"] for r in records] == [f"gsm8k-train-{i}" for i in range(6)]
    assert all(r["judgment"] for r in records if not r["correct"])
    assert all(r["provenance"]["generator"]["model"] == "smollm2" for r in records)

    # Different arguments into the same directory are refused.
    proc = _nlft(*[a if a != "24" else "32" for a in args], "--out", str(killed))
    assert proc.returncode == 2
    assert "max_new_tokens: 24 -> 32" in proc.stderr


@pytest.mark.slow
def test_generate_samples_per_question_with_own_seeds(tmp_path: Path) -> None:
    template = tmp_path / "short.txt"
    template.write_text("Question: {question}\nAnswer:")
    args = ["generate", "--dataset", "chain_sum", "--limit", "2", "--seed", "5", "--num-samples", "2",
            "--temperature", "1.0", "--max-new-tokens", "12", "--template", str(template), "--no-progress"]
    out = tmp_path / "g"
    proc = _nlft(*args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 4 outputs to {out / 'outputs.jsonl'}" in proc.stdout
    rows = _lines(out / "outputs.jsonl")
    q0, q1 = "chain_sum-train-5-0", "chain_sum-train-5-1"
    assert [(r["id"], r["question_id"], r["sample"]) for r in rows] == [
        (f"{q0}-s0", q0, 0), (f"{q0}-s1", q0, 1), (f"{q1}-s0", q1, 0), (f"{q1}-s1", q1, 1)]
    assert len({r["provenance"]["seed"] for r in rows}) == 4
    assert rows[0]["provenance"]["template"]["name"] == "short.txt"
    assert rows[0]["provenance"]["sampling"] == {"max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0}
    # The same rows generated one question at a time (other batches) are the same texts.
    single = tmp_path / "single"
    proc = _nlft(*args, "--batch-size", "1", "--out", str(single))
    assert proc.returncode == 0, proc.stderr
    assert [r["output"] for r in _lines(single / "outputs.jsonl")] == [r["output"] for r in rows]


def test_a_file_is_never_extended_with_other_judge_settings(tmp_path: Path) -> None:
    from nlft.data.build import JudgeSpec, judge_outputs

    rows = _lines(_outputs_file(tmp_path / "outputs.jsonl"))
    out = tmp_path / "nlft.jsonl"
    judge_outputs(rows[:2], out, judge=JudgeSpec(batch_size=1), progress=False)
    with pytest.raises(DataError, match=r"nlft\.jsonl, line 1, field 'provenance': this file was written "
                                        r"with other judge settings"):
        judge_outputs(rows, out, judge=JudgeSpec(grading="strict"), progress=False)
    records = judge_outputs(rows, out, judge=JudgeSpec(batch_size=1), progress=False)
    assert [r["id"] for r in records] == ["a", "b", "c"]
    assert len(_lines(out)) == 3


def test_grading_that_reads_no_answer_is_said_loudly(tmp_path: Path) -> None:
    """A chat model that never writes '#### N': strict grading calls every right answer wrong. The default grading
    (flexible) reads them, and strict grading warns with the count."""
    rows = [{"id": str(i), "question": "q", "reference": f"#### {i}", "gold": str(i), "output": f"So it is {i}."}
            for i in range(4)]
    inp = tmp_path / "outputs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = _nlft("judge", "--input", str(inp), "--out", str(tmp_path / "flex"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "correct: 4  incorrect: 0" in proc.stdout and "WARNING" not in proc.stderr
    proc = _nlft("judge", "--input", str(inp), "--out", str(tmp_path / "strict"), "--grading", "strict",
                 "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "correct: 0  incorrect: 4" in proc.stdout
    assert "grading: strict: only the '####' answer line the prompt asks for; an answer was read from 0 of 4" \
        in proc.stdout
    assert "WARNING: only 0 of 4 outputs carry the '#### <answer>' line that strict grading reads" in proc.stderr
    assert "--grading flexible (the default)" in proc.stderr
