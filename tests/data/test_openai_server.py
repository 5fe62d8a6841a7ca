"""The OpenAI-compatible client against real servers on loopback.

Failure modes use a small stdlib HTTP server in a thread that answers 500, 429, slow responses,
garbage and 401 on cue. The end-to-end tests use llama-cpp-python's server with the SmolLM2 GGUF.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import REPO, SECRET, ScriptedServer, ok_reply

from nlft.data.generation import APIError, AuthenticationError, OpenAIChatClient


def _client(url: str, **kw: Any) -> OpenAIChatClient:
    kw.setdefault("backoff", 0.01)
    return OpenAIChatClient(url, "test-model", **kw)


def test_success_sends_the_openai_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLFT_TEST_KEY", SECRET)
    with ScriptedServer([ok_reply()]) as server, _client(server.url, api_key_env="NLFT_TEST_KEY") as client:
        text, tokens = client.complete_with_usage("What is 2+2?", temperature=0.5, max_tokens=33, seed=9)
    assert (text, tokens) == ("2 + 2 = 4\n#### 4", 7)
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == f"Bearer {SECRET}"
    assert request["payload"] == {"model": "test-model",
                                  "messages": [{"role": "user", "content": "What is 2+2?"}],
                                  "temperature": 0.5, "max_tokens": 33, "top_p": 1.0, "seed": 9}


def test_no_key_sends_no_authorization() -> None:
    with ScriptedServer([ok_reply()]) as server, _client(server.url, api_key_env="NLFT_UNSET_VARIABLE") as client:
        assert client.complete([{"role": "user", "content": "hi"}]) == "2 + 2 = 4\n#### 4"
    assert server.requests[0]["authorization"] is None


def test_500_is_retried_then_gives_up() -> None:
    error = (500, {}, b"internal error")
    with ScriptedServer([error]) as server, _client(server.url, max_retries=3) as client, \
            pytest.raises(APIError, match=r"gave up after 4 attempts; last error: HTTP 500: internal error"):
        client.complete("hi")
    assert len(server.requests) == 4


def test_429_then_success_honours_retry_after() -> None:
    limited = (429, {"Retry-After": "0.3"}, b'{"error": "rate limited"}')
    with ScriptedServer([limited, limited, ok_reply("fine")]) as server, _client(server.url) as client:
        start = time.perf_counter()
        assert client.complete("hi") == "fine"
        elapsed = time.perf_counter() - start
    assert len(server.requests) == 3
    assert elapsed >= 0.6  # two waits of at least Retry-After


def test_timeout_is_retried() -> None:
    with ScriptedServer([("sleep", 1.5, ok_reply("late")), ok_reply("on time")]) as server, \
            _client(server.url, timeout=0.3) as client:
        assert client.complete("hi") == "on time"
    assert len(server.requests) == 2


@pytest.mark.parametrize("garbage", [b"<html>not json</html>", b'{"choices": []}',
                                     b'{"choices": [{"message": {"content": null}}]}'])
def test_garbage_json_is_retried(garbage: bytes) -> None:
    with ScriptedServer([(200, {}, garbage), ok_reply("good")]) as server, _client(server.url) as client:
        assert client.complete("hi") == "good"
    assert len(server.requests) == 2


def test_garbage_forever_gives_a_clear_error() -> None:
    with ScriptedServer([(200, {}, b"nonsense")]) as server, _client(server.url, max_retries=1) as client, \
            pytest.raises(APIError, match="unexpected response"):
        client.complete("hi")
    assert len(server.requests) == 2


def test_401_fails_at_once_without_echoing_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLFT_TEST_KEY", SECRET)
    denied = (401, {}, json.dumps({"error": f"Incorrect API key provided: {SECRET}"}).encode())
    with ScriptedServer([denied]) as server, _client(server.url, api_key_env="NLFT_TEST_KEY") as client, \
            pytest.raises(AuthenticationError) as info:
        client.complete("hi")
    assert len(server.requests) == 1
    assert "$NLFT_TEST_KEY was refused" in str(info.value)
    assert SECRET not in str(info.value)


def test_other_4xx_is_not_retried_and_scrubs_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLFT_TEST_KEY", SECRET)
    bad = (400, {}, f"bad request from key {SECRET}".encode())
    with ScriptedServer([bad]) as server, _client(server.url, api_key_env="NLFT_TEST_KEY") as client, \
            pytest.raises(APIError) as info:
        client.complete("hi")
    assert len(server.requests) == 1
    assert "HTTP 400" in str(info.value) and "***" in str(info.value)
    assert SECRET not in str(info.value)


def test_concurrency_is_bounded_and_order_kept() -> None:
    script = [("sleep", 0.2, ok_reply(f"answer {i}")) for i in range(8)]
    with ScriptedServer(script) as server, _client(server.url, max_concurrency=3) as client:
        results = client.complete_many([f"q{i}" for i in range(8)], progress=False)
    assert server.max_in_flight == 3
    assert len(results) == 8
    # The i-th prompt's answer is the one the server sent for that request.
    by_prompt = {r["payload"]["messages"][0]["content"]: i for i, r in enumerate(server.requests)}
    assert [text for text, _ in results] == [f"answer {by_prompt[f'q{i}']}" for i in range(8)]


def test_cli_auth_failure_keeps_the_key_out_of_files_and_logs(tmp_path: Path) -> None:
    denied = (401, {}, json.dumps({"error": f"bad key {SECRET}"}).encode())
    with ScriptedServer([denied]) as server:
        out = tmp_path / "run"
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), MY_KEY=SECRET)
        proc = subprocess.run(
            [sys.executable, "-m", "nlft", "generate", "--dataset", "chain_sum", "--limit", "2",
             "--backend", "openai", "--base-url", server.url, "--model-name", "m", "--api-key-env", "MY_KEY",
             "--out", str(out), "--no-progress"],
            env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "HTTP 401" in proc.stderr and "$MY_KEY was refused" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


# --------------------------------------------------------------------------------------------------
# A real llama.cpp server (llama-cpp-python) serving SmolLM2-135M-Instruct.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'nlft[server]')")
    pytest.importorskip("uvicorn", reason="llama-cpp-python[server] extras are not installed")
    from nlft.utils.models import _smollm2_gguf

    try:
        gguf = _smollm2_gguf()
    except RuntimeError as err:
        pytest.skip(str(err))
    port = _free_port()
    # A file, not a pipe: the server logs a lot and would block on a full pipe.
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.server
@pytest.mark.slow
def test_llama_server_completes_deterministically(llama_server: str) -> None:
    with OpenAIChatClient(llama_server, "smollm2", api_key_env="NLFT_UNSET_VARIABLE") as client:
        first = client.complete("What is 2 + 3? Answer with the number only.", max_tokens=16, seed=1)
        second = client.complete("What is 2 + 3? Answer with the number only.", max_tokens=16, seed=1)
        text, tokens = client.complete_with_usage("Say hello.", max_tokens=8)
    assert first == second
    assert "5" in first
    assert text.strip() and isinstance(tokens, int) and 0 < tokens <= 8


@pytest.mark.server
@pytest.mark.slow
def test_prepare_with_server_generator_and_judge(llama_server: str, tmp_path: Path) -> None:
    out = tmp_path / "p"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OPENAI_API_KEY=SECRET)
    cmd = [sys.executable, "-m", "nlft", "prepare", "--dataset", "chain_sum", "--limit", "3", "--seed", "1",
           "--backend", "openai", "--base-url", llama_server, "--model-name", "smollm2",
           "--max-new-tokens", "48", "--judge", "openai", "--judge-max-new-tokens", "48",
           "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"NLFT data: {out / 'nlft.jsonl'}" in proc.stdout
    records = [json.loads(line) for line in (out / "nlft.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["chain_sum-train-1-0", "chain_sum-train-1-1", "chain_sum-train-1-2"]
    for r in records:
        assert r["output"].strip()
        generator = {"backend": "openai", "model": "smollm2", "base_url": llama_server}
        assert r["provenance"]["generator"] == generator
        assert r["provenance"]["judge"]["kind"] == "openai"
        assert (r["judgment"] is None) == r["correct"]
        if not r["correct"]:
            assert r["judgment"].strip()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 3 and summary["correct"] + summary["incorrect"] == 3
    # The key was in the environment and sent to the server, but is written nowhere.
    for path in out.rglob("*"):
        assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in proc.stdout + proc.stderr
    # Same command again: everything is done, nothing is added.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [json.loads(line) for line in (out / "nlft.jsonl").read_text().splitlines()] == records
