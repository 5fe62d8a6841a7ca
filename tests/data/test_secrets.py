"""API keys come only from the environment and are never written: not in args/config files,
manifests, outputs, logs or the console."""

from __future__ import annotations

import json
import subprocess

from support import CountingServer, env, nlft_cmd, write_questions

SECRET = "sk-nlft-SECRET-7f3a9c1e5b-do-not-write"


def test_prepare_with_server_generator_and_judge_never_writes_the_key(tmp_path):
    """``nlft prepare`` (server generator + server judge), rerun once to resume: the key is sent as a
    bearer token and appears in no file of the output directory and in no console output."""
    data = tmp_path / "q.jsonl"
    write_questions(data, 4)
    out = tmp_path / "run"
    seen_auth: list[str] = []

    def answer(k: int) -> str:
        return f"{k} + 1 = {k + 2}\n#### {k + 2}"  # wrong: every row is judged by the server

    cmd = nlft_cmd("prepare", "--dataset", str(data), "--backend", "openai", "--base-url", "URL", "--model-name", "m",
                   "--judge", "openai", "--api-key-env", "NLFT_SECRET_KEY", "--batch-size", "2", "--out", str(out),
                   "--no-progress")
    with CountingServer(answer) as server:
        cmd[cmd.index("URL")] = server.url
        handler = server.httpd.RequestHandlerClass
        original = handler.do_POST

        def spy(self):
            seen_auth.append(self.headers.get("Authorization"))
            original(self)

        handler.do_POST = spy
        logs = ""
        for _ in range(2):
            proc = subprocess.run(cmd, env=env(NLFT_SECRET_KEY=SECRET), capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            logs += proc.stdout + proc.stderr
    assert seen_auth and all(a == f"Bearer {SECRET}" for a in seen_auth)
    assert len(seen_auth) == 8  # 4 generations + 4 judgments, none repeated by the rerun
    assert SECRET not in logs
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"outputs.jsonl", "nlft.jsonl", "args.json", "summary.json"}
    for path in files:
        assert SECRET not in path.read_text(errors="replace"), path
    stored = json.loads((out / "args.json").read_text())
    assert stored["api_key_env"] == "NLFT_SECRET_KEY"  # the variable's name, never its value
