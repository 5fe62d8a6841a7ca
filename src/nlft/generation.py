"""Text generation: batched local Hugging Face models, and an OpenAI-compatible HTTP client.

Sampling is reproducible per prompt: each prompt has its own seed (by default derived from the run
seed and the prompt's position, see :func:`derive_seed`) and its own random generator, so the text
drawn for a prompt does not depend on which other prompts share its batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nlft.grading import _NUMBER

# The solve instruction asks for '{analysis}\n#### {answer}'. Small models then carry on with a new
# few-shot "Question:", so generation stops once the answer line is complete.
_ANSWER_LINE_RE = re.compile(r"####[ \t]*(?:" + _NUMBER + r")[^\n]*(?:\n|$)")
_NEXT_QUESTION_RE = re.compile(r"\n\s*Question:")


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and an item key (row id, sample index): stable across runs."""
    digest = hashlib.sha256(json.dumps([seed, *parts], default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def truncate_output(text: str) -> str:
    """Cut a solution after its ``#### N`` line, or before a following few-shot ``Question:``."""
    cut = len(text)
    answer = _ANSWER_LINE_RE.search(text)
    if answer:
        cut = answer.end()
    nxt = _NEXT_QUESTION_RE.search(text)
    if nxt and nxt.start() < cut:
        cut = nxt.start()
    return text[:cut].strip()


def _answer_done(text: str) -> bool:
    answer = _ANSWER_LINE_RE.search(text)
    return bool(answer and answer.group(0).endswith("\n")) or bool(_NEXT_QUESTION_RE.search(text))


def generate_hf(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int = 512,
                temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                progress: bool = True, seeds: Sequence[int] | None = None, chat: bool = False,
                stop_at_answer: bool = True) -> list[str]:
    """Generate one completion per prompt with a local causal LM.

    Batched with left padding and the KV cache; greedy when ``temperature == 0``, otherwise
    temperature / nucleus (``top_p``) sampling with one random generator per prompt seeded by
    ``seeds[i]`` (default ``derive_seed(seed, i)``). ``chat=True`` wraps each prompt with the
    tokenizer's chat template (as one user turn); otherwise prompts are used as given.
    ``stop_at_answer`` ends a completion once its ``#### N`` line is written (see
    :func:`truncate_output`). Returns the completions, without the prompts.
    """
    return [text for text, _ in generate_hf_with_counts(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        seed=seed, batch_size=batch_size, progress=progress, seeds=seeds, chat=chat,
        stop_at_answer=stop_at_answer)]


def generate_hf_with_counts(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int = 512,
                            temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                            batch_size: int = 8, progress: bool = True, seeds: Sequence[int] | None = None,
                            chat: bool = False, stop_at_answer: bool = True) -> list[tuple[str, int]]:
    """Like :func:`generate_hf`, returning ``(completion, number of completion tokens)`` pairs."""
    import torch
    from tqdm.auto import tqdm
    from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

    from nlft.prompts import apply_chat

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if seeds is None:
        seeds = [derive_seed(seed, i) for i in range(len(prompts))]
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
    texts = [apply_chat(tokenizer, p, True) if chat else p for p in prompts]

    class _PerRowSampler(LogitsProcessor):
        """Draw each row's next token with that row's own generator; greedy then picks it."""

        def __init__(self, row_seeds: Sequence[int]) -> None:
            self.generators = [torch.Generator().manual_seed(s) for s in row_seeds]

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            probs = torch.softmax(scores.float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True)
                drop = sorted_p.cumsum(-1) - sorted_p > top_p
                sorted_p[drop] = 0.0
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
            chosen = torch.stack([torch.multinomial(probs[i], 1, generator=g)[0]
                                  for i, g in enumerate(self.generators)])
            out = torch.full_like(scores, float("-inf"))
            out[torch.arange(scores.shape[0]), chosen] = 0.0
            return out

    class _StopAtAnswer(StoppingCriteria):
        def __init__(self, prompt_len: int) -> None:
            self.prompt_len = prompt_len

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
            done = [_answer_done(tokenizer.decode(row[self.prompt_len:], skip_special_tokens=True))
                    for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    results: list[tuple[str, int]] = []
    model.eval()
    try:
        batches = range(0, len(texts), batch_size)
        for start in tqdm(batches, desc="generate", unit="batch", disable=not progress):
            chunk = texts[start:start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=not chat)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            prompt_len = enc["input_ids"].shape[1]
            processors = LogitsProcessorList()
            if temperature > 0:
                processors.append(_PerRowSampler(seeds[start:start + batch_size]))
            stopping = StoppingCriteriaList([_StopAtAnswer(prompt_len)] if stop_at_answer else [])
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     temperature=None, top_p=None, top_k=None,
                                     logits_processor=processors, stopping_criteria=stopping,
                                     pad_token_id=tokenizer.pad_token_id)
            for row in out[:, prompt_len:]:
                text = tokenizer.decode(row, skip_special_tokens=True)
                if stop_at_answer:
                    text = truncate_output(text)
                n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
                results.append((text, n_tokens))
    finally:
        tokenizer.padding_side = old_side
    return results


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend (OpenAI, vLLM, llama.cpp servers)


class APIError(RuntimeError):
    """A request to an OpenAI-compatible server failed for good (after retries, or not retryable)."""


class AuthenticationError(APIError):
    """The server refused the API key (HTTP 401/403)."""


class OpenAIChatClient:
    """Minimal client for ``POST {base_url}/chat/completions`` with retries and bounded concurrency.

    The API key is read from the environment variable ``api_key_env`` (optional: local servers need
    none). It is sent only in the ``Authorization`` header and removed from every error message.
    Retried with exponential backoff (honouring ``Retry-After``): HTTP 429 and 5xx, timeouts,
    connection errors and responses that are not the expected JSON. HTTP 401/403 raise
    :class:`AuthenticationError` at once.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 4, timeout: float = 60, max_retries: int = 5, backoff: float = 1.0,
                 max_backoff: float = 30.0) -> None:
        import httpx

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self._jitter = random.Random(0)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAIChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = min(self.max_backoff, max(delay, float(retry_after)))
        with self._lock:
            delay *= 1 + 0.1 * self._jitter.random()
        time.sleep(delay)

    def complete_with_usage(self, messages: str | list[dict[str, str]], temperature: float = 0.0,
                            max_tokens: int = 512, seed: int | None = None, top_p: float = 1.0,
                            stop: list[str] | None = None) -> tuple[str, int | None]:
        """One chat completion: ``(text, completion_tokens or None)``. A string is one user turn."""
        import httpx

        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                   "max_tokens": max_tokens, "top_p": top_p}
        if seed is not None:
            payload["seed"] = seed
        if stop:
            payload["stop"] = stop
        url = f"{self.base_url}/chat/completions"
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = self._client.post(url, json=payload)
            except httpx.TimeoutException:
                last = "the request timed out"
            except httpx.TransportError as err:
                last = f"connection error ({type(err).__name__})"
            else:
                status = response.status_code
                if status in (401, 403):
                    hint = (f"the key in ${self.api_key_env} was refused" if self._api_key else
                            f"no API key was sent; set the environment variable {self.api_key_env}")
                    raise AuthenticationError(f"{url}: HTTP {status}: {hint}")
                if status == 429 or status >= 500:
                    last = f"HTTP {status}: {self._scrub(response.text[:200])}"
                    retry_after = response.headers.get("retry-after")
                elif status >= 400:
                    raise APIError(f"{url}: HTTP {status}: {self._scrub(response.text[:500])}")
                else:
                    try:
                        body = response.json()
                        text = body["choices"][0]["message"]["content"]
                        if not isinstance(text, str):
                            raise TypeError("content is not a string")
                        usage = body.get("usage") or {}
                        return text, usage.get("completion_tokens")
                    except (ValueError, KeyError, IndexError, TypeError) as err:
                        snippet = self._scrub(response.text[:200])
                        last = f"unexpected response ({type(err).__name__}): {snippet!r}"
            if attempt < self.max_retries:
                self._sleep(attempt, retry_after)
        raise APIError(f"{url}: gave up after {self.max_retries + 1} attempts; last error: {last}")

    def complete(self, messages: str | list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 seed: int | None = None, top_p: float = 1.0, stop: list[str] | None = None) -> str:
        """One chat completion's text. ``messages`` is a list of chat messages or one user prompt."""
        return self.complete_with_usage(messages, temperature, max_tokens, seed, top_p, stop)[0]

    def complete_many(self, prompts: Sequence[str | list[dict[str, str]]], *, temperature: float = 0.0,
                      max_tokens: int = 512, seeds: Sequence[int | None] | None = None, top_p: float = 1.0,
                      stop: list[str] | None = None, progress: bool = True) -> list[tuple[str, int | None]]:
        """Complete many prompts with at most ``max_concurrency`` requests in flight; results in order."""
        from tqdm.auto import tqdm

        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [pool.submit(self.complete_with_usage, p, temperature, max_tokens, s, top_p, stop)
                       for p, s in zip(prompts, seeds)]
            results = []
            for future in tqdm(futures, desc="requests", unit="req", disable=not progress):
                results.append(future.result())
        return results
