"""Killed and rerun: no row lost, none duplicated, no paid request repeated for a finished row.

Each test starts a real ``nlft`` process, kills it with SIGKILL once some rows are on disk, reruns the
same command and checks the files (and, where a server is involved, the requests it received) against
an uninterrupted run.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

from support import CountingServer, assert_one_row_per_id, env, nlft_cmd, run_and_kill, write_questions

from nlft.utils.files import read_jsonl


def test_generate_killed_and_rerun_loses_nothing_and_repeats_no_finished_request(tmp_path):
    """``nlft generate`` on an OpenAI-compatible server, SIGKILLed after 2 of 6 chunks were written.

    The rerun writes exactly the missing rows; items whose rows were on disk at the kill are never
    requested again; the file equals an uninterrupted run's (same rows, same order).
    """
    n = 12
    data = tmp_path / "questions.jsonl"
    write_questions(data, n)

    def answer(k: int) -> str:
        return f"{k} plus 1 is {k + 1}.\n#### {k + 1}"

    def cmd(out: Path, url: str) -> list[str]:
        return nlft_cmd("generate", "--dataset", str(data), "--backend", "openai", "--base-url", url,
                        "--model-name", "m", "--batch-size", "2", "--max-concurrency", "1", "--max-retries", "0",
                        "--out", str(out), "--no-progress")

    out = tmp_path / "killed"
    with CountingServer(answer, delay=0.15) as server:
        seen = run_and_kill(cmd(out, server.url), out / "outputs.jsonl", min_lines=4, env=env())
        done_before = [r["id"] for r in read_jsonl(out / "outputs.jsonl", tolerate_torn_tail=True)]
        assert len(done_before) >= 4 and seen < n
        first_run_requests = len(server.requests)
        proc = subprocess.run(cmd(out, server.url), env=env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        again = Counter(server.requests[first_run_requests:])
    rows = assert_one_row_per_id(out / "outputs.jsonl", [f"q{k}" for k in range(n)])
    finished = {int(i[1:]) for i in done_before}
    assert not finished & set(again), f"finished rows requested again: {sorted(finished & set(again))}"
    assert set(again) == set(range(n)) - finished

    clean = tmp_path / "clean"
    with CountingServer(answer) as server:
        proc = subprocess.run(cmd(clean, server.url), env=env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert sorted(server.requests) == list(range(n))
    expected = read_jsonl(clean / "outputs.jsonl")
    assert [r["output"] for r in rows] == [r["output"] for r in expected]
    assert [r["id"] for r in rows] == [r["id"] for r in expected]


def test_llm_judge_killed_and_rerun_never_repeats_a_finished_judgment(tmp_path):
    """``nlft judge --judge openai``, SIGKILLed mid-run: each finished row was judged (paid) once.

    Every output is wrong, so every row needs one judge request. After the rerun the judge server has
    received, for each row already in ``nlft.jsonl`` at the kill, exactly one request; rows of the
    chunk in flight at the kill may be asked twice (their answers were never stored).
    """
    n = 10
    outputs = tmp_path / "outputs.jsonl"
    with open(outputs, "w", encoding="utf-8") as fh:
        for k in range(n):
            fh.write(json.dumps({"id": f"q{k}", "question": f"ITEM{k}: what is {k} + 1?",
                                 "reference": f"{k} + 1 = {k + 1}\n#### {k + 1}", "gold": str(k + 1),
                                 "output": f"{k} + 1 = {k + 2}\n#### {k + 2}"}) + "\n")

    def answer(k: int) -> str:
        return f"The sum is wrong for ITEM{k}: {k} + 1 = {k + 1}, not {k + 2}."

    out = tmp_path / "judged"
    cmd = nlft_cmd("judge", "--input", str(outputs), "--judge", "openai", "--base-url", "URL", "--model-name", "j",
                   "--batch-size", "2", "--max-concurrency", "1", "--max-retries", "0", "--out", str(out),
                   "--no-progress")
    with CountingServer(answer, delay=0.15) as server:
        cmd[cmd.index("URL")] = server.url
        run_and_kill(cmd, out / "nlft.jsonl", min_lines=4, env=env())
        finished = {int(r["id"][1:]) for r in read_jsonl(out / "nlft.jsonl", tolerate_torn_tail=True)}
        proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        requests = Counter(server.requests)
    rows = assert_one_row_per_id(out / "nlft.jsonl", [f"q{k}" for k in range(n)])
    assert len(finished) >= 4
    assert all(requests[k] == 1 for k in finished), requests
    assert set(requests) == set(range(n))
    assert sum(requests.values()) <= n + 2  # at most the one chunk in flight at the kill is asked again
    for row in rows:
        k = int(row["id"][1:])
        assert row["correct"] is False
        assert row["judgment"] == answer(k)
